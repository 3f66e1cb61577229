//! A minimal HTTP/1.1 client for the plain-HTTP endpoints (`/health`, `/metrics`, ...), spoken the
//! way curl and probes speak it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What an HTTP/1.1 request got back.
pub struct HttpResponse {
    pub status: u16,
    /// Status line and headers, lower-cased.
    pub head: String,
    /// The body, de-chunked.
    pub body: String,
}

/// One `GET <path>` over HTTP/1.1 with `Connection: close`, plus `extra` header lines.
pub async fn http_get(endpoint: &str, path: &str, extra: &str) -> HttpResponse {
    let mut s = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
        endpoint
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    HttpResponse {
        status,
        head: head.to_ascii_lowercase(),
        body: dechunk(head, body),
    }
}

/// The body of a response that may use chunked transfer encoding (etcd's Go server does).
fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
