//! Revisions and the two key encodings of the MVCC keyspace (DESIGN.md §2).
//!
//! * `kv` CF key: main (8 bytes BE) + sub (8 bytes BE), plus a trailing `t` for a tombstone.
//! * `index` CF key: the user key in an order-preserving, prefix-free encoding, followed by the
//!   revision inverted (bitwise not, big-endian) so that the newest version of a key sorts first.
//!
//! Invariants: for any user keys `a < b` (bytewise), every index key of `a` sorts before every index key
//! of `b`; within one user key, index keys sort by revision, newest first.

/// A revision: `main` is the store revision of a write transaction, `sub` numbers the changes inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Marks a tombstone: the last byte of a `kv` key and the value of an `index` entry.
pub const TOMBSTONE: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The `kv` CF key of this revision.
    pub fn kv_key(&self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            k.push(TOMBSTONE);
        }
        k
    }

    /// Parses a `kv` CF key into its revision and tombstone mark.
    pub fn from_kv_key(k: &[u8]) -> Option<(Revision, bool)> {
        if k.len() < 16 {
            return None;
        }
        let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(k[8..16].try_into().ok()?) as i64;
        Some((Revision { main, sub }, k.get(16) == Some(&TOMBSTONE)))
    }

    fn inverted(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(!(self.main as u64)).to_be_bytes());
        b[8..].copy_from_slice(&(!(self.sub as u64)).to_be_bytes());
        b
    }
}

/// Appends the order-preserving encoding of `key`: every 0x00 becomes 0x00 0xFF, and the key ends
/// with 0x00 0x01. The result is prefix-free and keeps bytewise order.
pub fn encode_key_into(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.push(0);
    out.push(1);
}

/// The encoded user key alone (the prefix shared by all its index entries).
pub fn encode_key(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 2);
    encode_key_into(key, &mut v);
    v
}

/// The index key of `key` at `rev`.
pub fn index_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 18);
    encode_key_into(key, &mut v);
    v.extend_from_slice(&rev.inverted());
    v
}

/// The smallest index key of `key` whose revision is at most `rev` (the seek target of a read at `rev`).
pub fn index_seek_at(key: &[u8], main: i64) -> Vec<u8> {
    index_key(key, Revision::new(main, i64::MAX))
}

/// An index key just past every entry of `key` (the seek target for the next user key).
pub fn index_after_key(key: &[u8]) -> Vec<u8> {
    let mut v = encode_key(key);
    v.extend_from_slice(&[0xFF; 17]);
    v
}

/// Splits an index key into the encoded user key length and the revision. Returns the decoded user key.
pub fn decode_index_key(k: &[u8]) -> Option<(Vec<u8>, usize, Revision)> {
    let mut user = Vec::new();
    let mut i = 0;
    loop {
        let b = *k.get(i)?;
        if b == 0 {
            match *k.get(i + 1)? {
                0xFF => {
                    user.push(0);
                    i += 2;
                }
                1 => {
                    i += 2;
                    break;
                }
                _ => return None,
            }
        } else {
            user.push(b);
            i += 1;
        }
    }
    let rest = k.get(i..i + 16)?;
    let main = !u64::from_be_bytes(rest[0..8].try_into().ok()?) as i64;
    let sub = !u64::from_be_bytes(rest[8..16].try_into().ok()?) as i64;
    Some((user, i, Revision { main, sub }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_keeps_order_and_is_prefix_free() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x00\x01",
            b"\x01",
            b"a",
            b"a\x00",
            b"a\x00b",
            b"a\x01",
            b"ab",
            b"b",
            b"\xff",
            b"\xff\xff",
        ];
        for w in keys.windows(2) {
            assert!(
                encode_key(w[0]) < encode_key(w[1]),
                "{:?} < {:?}",
                w[0],
                w[1]
            );
            // any index entry of the smaller key sorts before any of the larger one
            let hi = index_key(w[0], Revision::new(1, 0));
            let lo = index_key(w[1], Revision::new(i64::MAX, 0));
            assert!(hi < lo);
        }
    }

    #[test]
    fn index_entries_newest_first_and_roundtrip() {
        let a = index_key(b"k\x00y", Revision::new(5, 1));
        let b = index_key(b"k\x00y", Revision::new(5, 0));
        let c = index_key(b"k\x00y", Revision::new(3, 7));
        assert!(a < b && b < c);
        let (user, n, rev) = decode_index_key(&a).unwrap();
        assert_eq!(user, b"k\x00y");
        assert_eq!(n, encode_key(b"k\x00y").len());
        assert_eq!(rev, Revision::new(5, 1));
        assert!(index_seek_at(b"k\x00y", 5) <= a);
        assert!(index_seek_at(b"k\x00y", 4) > b && index_seek_at(b"k\x00y", 4) <= c);
        assert!(index_after_key(b"k\x00y") > c);
        assert!(index_after_key(b"k\x00y") < encode_key(b"k\x00y\x00"));
    }

    #[test]
    fn kv_key_roundtrip() {
        let r = Revision::new(42, 3);
        assert_eq!(Revision::from_kv_key(&r.kv_key(true)), Some((r, true)));
        assert_eq!(Revision::from_kv_key(&r.kv_key(false)), Some((r, false)));
        assert!(Revision::new(2, 9).kv_key(false) < Revision::new(3, 0).kv_key(true));
    }
}
