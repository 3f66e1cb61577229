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

/// Sends one whole HTTP/1.1 request (with `Connection: close`) and reads the whole answer.
async fn exchange(endpoint: &str, request: &str) -> HttpResponse {
    let mut s = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
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

/// One `GET <path>`, plus `extra` header lines.
pub async fn http_get(endpoint: &str, path: &str, extra: &str) -> HttpResponse {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {endpoint}\r\n{extra}Connection: close\r\n\r\n");
    exchange(endpoint, &req).await
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

/// One `POST <path>` with a JSON `body`.
pub async fn http_post(endpoint: &str, path: &str, body: &str) -> HttpResponse {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(endpoint, &req).await
}

/// A streamed response (the gateway's watch): lines of the chunked body as they arrive.
pub struct HttpStream {
    conn: tokio::net::TcpStream,
    raw: Vec<u8>,
    head_done: bool,
    /// De-chunked body bytes not yet returned as lines.
    body: Vec<u8>,
    pub status: u16,
}

impl HttpStream {
    /// Sends `POST <path>` with `body` and reads the status line and headers.
    pub async fn post(endpoint: &str, path: &str, body: &str) -> HttpStream {
        let mut conn = tokio::net::TcpStream::connect(endpoint).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut s = HttpStream {
            conn,
            raw: Vec::new(),
            head_done: false,
            body: Vec::new(),
            status: 0,
        };
        while !s.head_done {
            s.fill().await;
        }
        s
    }

    async fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), self.conn.read(&mut buf))
            .await
            .expect("more of the stream within 10 s")
            .unwrap();
        assert!(n > 0, "the stream ended");
        self.raw.extend_from_slice(&buf[..n]);
        if !self.head_done {
            let text = String::from_utf8_lossy(&self.raw).into_owned();
            if let Some((head, _)) = text.split_once("\r\n\r\n") {
                self.status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .expect("a status line");
                assert!(
                    head.to_ascii_lowercase()
                        .contains("transfer-encoding: chunked"),
                    "{head}"
                );
                self.raw.drain(..head.len() + 4);
                self.head_done = true;
            }
        }
        // Move every complete chunk into `body`.
        while let Some(pos) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&self.raw[..pos]).trim(), 16)
                .expect("a chunk size");
            if self.raw.len() < pos + 2 + size + 2 {
                break;
            }
            self.body
                .extend_from_slice(&self.raw[pos + 2..pos + 2 + size]);
            self.raw.drain(..pos + 2 + size + 2);
        }
    }

    /// The next line of the body, without its newline.
    pub async fn next_line(&mut self) -> String {
        loop {
            if let Some(pos) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=pos).collect();
                return String::from_utf8_lossy(&line[..pos]).into_owned();
            }
            self.fill().await;
        }
    }
}
