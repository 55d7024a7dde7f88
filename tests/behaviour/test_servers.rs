//! The test support's own servers: a Redis server started for a test is only
//! handed out once it is the one listening on its port.

use std::net::TcpListener;

use crate::support::sentinel::{RedisProcess, ScratchDir, free_port};

/// Another process can take a probed port before the server binds it; the
/// connection that should say the server listens is then answered by that
/// other process. The server, unable to bind, exits: that is an error naming
/// the clash (which the sets' start retries on new ports), not a server.
#[test]
fn a_redis_server_whose_port_another_process_holds_is_an_error_not_a_server() {
    let dir = ScratchDir::new("port-taken");
    let port = free_port();
    let _holder = TcpListener::bind(("127.0.0.1", port)).expect("the port was free a moment ago");
    match RedisProcess::data_node(port, None, None, &dir.0) {
        Ok(_) => panic!("a redis-server that could not bind {port} was handed out as running"),
        Err(e) => assert!(e.contains("Address already in use"), "{e}"),
    }
}
