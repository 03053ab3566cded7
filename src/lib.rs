//! tapfwd: collects Proofpoint TAP SIEM events for many tenants and ships them, complete and
//! without duplicates, to file, syslog, Kafka and HTTP sinks.

pub mod clock;
pub mod simulate;
pub mod tap;
