use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

fn pair(host: &str) -> (BatchSocket, BatchSocket) {
    let any: SocketAddr = format!("{host}:0")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let a = BatchSocket::bind(any).unwrap_or_else(|e| panic!("{e}"));
    let b = BatchSocket::bind(any).unwrap_or_else(|e| panic!("{e}"));
    (a, b)
}

fn addr(s: &BatchSocket) -> SocketAddr {
    s.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

fn collect(s: &RecvBuffer) -> Vec<(Vec<u8>, SocketAddr)> {
    s.datagrams().map(|(d, a)| (d.to_vec(), a)).collect()
}

#[test]
fn batch_round_trip_both_families() {
    for host in ["127.0.0.1", "[::1]"] {
        let (a, b) = pair(host);
        let mut buf = RecvBuffer::default();
        let to = addr(&b);
        let out: Vec<(Vec<u8>, SocketAddr)> = (0..40u8)
            .map(|i| (vec![i; 1 + i as usize * 100], to))
            .collect();
        let res = a.send(&out);
        assert_eq!(res.sent, 40);
        assert!(res.error.is_none());
        let mut got = Vec::new();
        let deadline = Some(Instant::now() + Duration::from_secs(2));
        while got.len() < 40 {
            let n = b
                .recv(&mut buf, 16, deadline)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!((1..=16).contains(&n));
            got.extend(collect(&buf));
        }
        let expected: Vec<(Vec<u8>, SocketAddr)> =
            out.into_iter().map(|(d, _)| (d, addr(&a))).collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn largest_datagram_arrives_whole() {
    let (a, b) = pair("127.0.0.1");
    let mut buf = RecvBuffer::default();
    let big = vec![0xA5u8; 65_507];
    assert_eq!(a.send(&[(&big[..], addr(&b))]).sent, 1);
    assert_eq!(
        b.recv(&mut buf, 1, Some(Instant::now() + Duration::from_secs(2)))
            .ok(),
        Some(1)
    );
    assert_eq!(collect(&buf), vec![(big, addr(&a))]);
}

#[test]
fn deadline_gives_empty_batch() {
    let (_, b) = pair("127.0.0.1");
    let mut buf = RecvBuffer::default();
    let start = Instant::now();
    assert_eq!(
        b.recv(&mut buf, 8, Some(start + Duration::from_millis(30)))
            .ok(),
        Some(0)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(buf.datagrams().count(), 0);
    assert_eq!(b.recv(&mut buf, 8, Some(Instant::now())).ok(), Some(0));
}

#[test]
fn bad_batch_size_and_refused_send() {
    let (a, b) = pair("127.0.0.1");
    let mut buf = RecvBuffer::default();
    assert!(b.recv(&mut buf, 0, None).is_err());
    assert!(b.recv(&mut buf, MAX_BATCH + 1, None).is_err());
    // Port 0 is not a valid destination: the first datagram fails, nothing is sent.
    let zero: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
    let res = a.send(&[(b"x".as_slice(), zero)]);
    assert_eq!(res.sent, 0);
    assert!(res.error.is_some());
    // An oversized datagram stops the batch after the ones before it.
    let to = addr(&b);
    let huge = vec![0u8; 70_000];
    let res = a.send(&[(&b"ok"[..], to), (&huge[..], to)]);
    assert_eq!(res.sent, 1);
    assert_eq!(
        res.error.map(|e| e.raw_os_error()),
        Some(Some(libc::EMSGSIZE))
    );
}

#[test]
fn ipv6_socket_is_ipv6_only() {
    // With IPV6_V6ONLY the wildcard IPv6 socket can share a port number with IPv4.
    let v6 = BatchSocket::bind("[::]:0".parse().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = addr(&v6).port();
    let v4 = BatchSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)));
    assert!(v4.is_ok());
}
