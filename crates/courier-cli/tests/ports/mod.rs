//! Free ports for the `courier serve` processes these tests start.

use std::net::TcpListener;
use std::sync::Mutex;

/// A free port on `ip`, never one this process handed out before: the kernel
/// may offer a port again as soon as the probe closes, before the server of a
/// test running beside this one has bound it.
pub fn free_port_on(ip: &str) -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
