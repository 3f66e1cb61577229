//! Free loopback ports.
//!
//! A port is "free" when binding `127.0.0.1:0` handed it out; the listener is dropped before the server
//! binds it, so another process can race us. [`crate::MemberBuilder::start`] therefore retries with new
//! ports when the server reports `address already in use`.

use std::net::TcpListener;

/// Returns `n` distinct free ports on 127.0.0.1 (all listeners are held until every port is picked).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}
