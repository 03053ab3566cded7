//! A server on 127.0.0.1 (port 0) that answers every request with one canned HTTP reply, for the
//! clients' tests of how a reply maps to an [`super::ApiError`] and its disposition.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Serves `status` with `headers` and `body` (as `application/json` unless `headers` says
/// otherwise) to every request, one connection at a time, each closed after its reply; the server
/// lives until the runtime ends.
pub(crate) async fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reply = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        reply.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str("\r\n");
    reply.push_str(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    addr
}
