//! The TCP input's bounds, on a real node and real sockets: open connections,
//! idle time, message size, the token, and where it may listen.

use std::time::Duration;

use courier_ingest::{IngestError, IngestOptions};
use courier_runtime::Courier;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod support;

use support::{Result, node};

fn tcp(options: IngestOptions) -> IngestOptions {
    IngestOptions {
        tcp_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..options
    }
}

async fn answer_line(socket: TcpStream) -> Value {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), BufReader::new(socket).read_line(&mut line))
        .await
        .expect("an answer in time")
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[actix_rt::test]
async fn a_connection_past_the_bound_is_answered_and_closed() -> Result {
    let (courier, ingest) = node(tcp(IngestOptions {
        tcp_max_connections: 1,
        ..IngestOptions::default()
    }))
    .await?;
    let addr = ingest.tcp_addr().expect("listening");
    let held = TcpStream::connect(addr).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = answer_line(TcpStream::connect(addr).await?).await;
    assert_eq!(refused["error"], "too many connections", "{refused}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(addr).await?;
    again
        .write_all(br#"{"provider": "log", "recipient": ["a@b.c"], "message": "x"}"#)
        .await?;
    again.shutdown().await?;
    assert_eq!(answer_line(again).await["status"], "queued");
    ingest.shutdown().await;
    courier.shutdown().await?;
    Ok(())
}

#[actix_rt::test]
async fn an_idle_connection_is_told_and_closed() -> Result {
    let (courier, ingest) = node(tcp(IngestOptions {
        tcp_idle_timeout: Duration::from_millis(300),
        ..IngestOptions::default()
    }))
    .await?;
    let socket = TcpStream::connect(ingest.tcp_addr().expect("listening")).await?;
    let answer = answer_line(socket).await;
    assert_eq!(answer["error"], "idle timeout", "{answer}");
    ingest.shutdown().await;
    courier.shutdown().await?;
    Ok(())
}

#[actix_rt::test]
async fn an_oversized_message_is_refused_whether_whole_or_endless() -> Result {
    let (courier, ingest) = node(tcp(IngestOptions {
        max_message_bytes: 1024,
        ..IngestOptions::default()
    }))
    .await?;
    let addr = ingest.tcp_addr().expect("listening");
    let read_all = |mut socket: TcpStream| async move {
        let mut all = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut all)).await;
        all.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    // A whole message too large is refused; the next one on the line still goes in.
    let mut socket = TcpStream::connect(addr).await?;
    let big = json!({"provider": "log", "recipient": ["a@b.c"], "message": "x".repeat(4096)});
    let small = json!({"provider": "log", "recipient": ["a@b.c"], "message": "x"});
    socket.write_all(format!("{big}\n{small}\n").as_bytes()).await?;
    socket.shutdown().await?;
    let answers = read_all(socket).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["error"], "message too large");
    assert_eq!(answers[0]["detail"]["limit_bytes"], 1024);
    assert_eq!(answers[1]["status"], "queued");
    // Input that never becomes a message is refused once past the bound, and the connection closed.
    let mut socket = TcpStream::connect(addr).await?;
    let endless = format!("{{\"message\": \"{}", "y".repeat(4096));
    socket.write_all(endless.as_bytes()).await?;
    let answers = read_all(socket).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["error"], "message too large");
    ingest.shutdown().await;
    courier.shutdown().await?;
    Ok(())
}

#[actix_rt::test]
async fn with_a_token_every_message_must_carry_it() -> Result {
    let (courier, ingest) = node(tcp(IngestOptions {
        tcp_token: Some("s3cret".into()),
        ..IngestOptions::default()
    }))
    .await?;
    let addr = ingest.tcp_addr().expect("listening");
    let send = |message: Value| async move {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(message.to_string().as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
        answer_line(socket).await
    };
    let message = json!({"provider": "log", "recipient": ["a@b.c"], "message": "x"});
    assert_eq!(send(message.clone()).await["error"], "unauthorized");
    let mut wrong = message.clone();
    wrong["auth"] = json!("s3creT");
    assert_eq!(send(wrong).await["error"], "unauthorized");
    let mut right = message.clone();
    right["auth"] = json!("s3cret");
    let answer = send(right).await;
    assert_eq!(answer["status"], "queued", "{answer}");
    let id: courier_core::ExecutionId = serde_json::from_value(answer["id"].clone())?;
    let record = courier.wait_for(id, Some(Duration::from_secs(30))).await?;
    assert!(
        !record.args.to_string().contains("s3cret"),
        "the token is never stored: {}",
        record.args
    );
    ingest.shutdown().await;
    courier.shutdown().await?;
    Ok(())
}

#[test]
fn beyond_loopback_only_with_a_token_and_bad_settings_are_named() {
    let builder = || Courier::builder();
    let open = IngestOptions {
        tcp_addr: Some("0.0.0.0:8991".parse().unwrap()),
        ..IngestOptions::default()
    };
    let err = courier_ingest::install(builder(), open.clone()).err().expect("refused");
    assert!(
        matches!(
            err,
            IngestError::Setting {
                setting: "tcp_addr",
                ..
            }
        ),
        "{err}"
    );
    let with_token = IngestOptions {
        tcp_token: Some("t".into()),
        ..open
    };
    assert!(courier_ingest::install(builder(), with_token).is_ok());
    let stream_without_redis = IngestOptions {
        stream: Some("s".into()),
        ..IngestOptions::default()
    };
    let err = courier_ingest::install(builder(), stream_without_redis)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("ingest.redis_url"), "{err}");
    let mut bad_provider = IngestOptions::default();
    bad_provider.providers.insert(
        "mail".into(),
        courier_ingest::ProviderConfig {
            kind: Some("email".into()),
            ..Default::default()
        },
    );
    let err = courier_ingest::install(builder(), bad_provider).err().expect("refused");
    assert!(
        err.to_string().contains("ingest.providers.mail") && err.to_string().contains("smtp_url"),
        "{err}"
    );
}
