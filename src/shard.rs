//! Splitting the tenant list between replicas: `--shard I/N` (or `shard = "I/N"` in the config).
//!
//! Replica `I` of `N` (`0 ≤ I < N`) polls exactly the tenants whose id hashes to `I`:
//!
//! ```text
//! shard(id) = FNV-1a-64(utf8 bytes of id) mod N
//! FNV-1a-64: h = 0xcbf29ce484222325; for each byte b: h = (h XOR b) * 0x100000001b3 (mod 2^64)
//! ```
//!
//! The hash is fixed here forever (changing it would move tenants between state volumes), depends
//! on nothing but the id, and is easy to reproduce in any language when an operator asks "which
//! replica owns tenant X?" (`tapfwd check --config F --shard I/N` prints it too). Every tenant
//! belongs to exactly one shard for any `N`, so N replicas with their own state volumes split the
//! work without coordinating (design.md, "Scale past one machine"). Changing `N` moves tenants to
//! other replicas, whose state volumes do not hold their checkpoints: see deploy/scaling.md.

use std::fmt;
use std::str::FromStr;

/// Replica `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This replica, from 0.
    pub index: u32,
    /// How many replicas share the tenant list; at least 1.
    pub count: u32,
}

/// The stable 64-bit FNV-1a hash of a tenant id (see the module documentation).
pub fn tenant_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// The shard a tenant belongs to when there are `count` of them.
    pub fn of(id: &str, count: u32) -> u32 {
        (tenant_hash(id) % u64::from(count.max(1))) as u32
    }

    /// Whether this replica polls `id`.
    pub fn owns(&self, id: &str) -> bool {
        Shard::of(id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl<'de> serde::Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tenant_is_owned_by_exactly_one_shard_for_1_to_8_replicas() {
        let ids: Vec<String> = (0..2000).map(|i| format!("tenant-{i:04}")).collect();
        for n in 1..=8u32 {
            let shards: Vec<Shard> = (0..n).map(|index| Shard { index, count: n }).collect();
            for id in &ids {
                let owners = shards.iter().filter(|s| s.owns(id)).count();
                assert_eq!(owners, 1, "{id} with {n} shards");
            }
            // Roughly even: no shard gets less than half its fair share.
            for s in &shards {
                let mine = ids.iter().filter(|id| s.owns(id)).count();
                assert!(mine * 2 * n as usize >= ids.len(), "shard {s}: {mine}");
            }
        }
    }

    #[test]
    fn hash_is_the_documented_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(tenant_hash(""), 0xcbf29ce484222325);
        assert_eq!(tenant_hash("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(tenant_hash("foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 2, count: 8 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("I/N"), "{e}");
        }
    }
}
