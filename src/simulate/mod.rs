//! The built-in TAP API simulator (stub until the simulator lands).
#![allow(missing_docs, unused)]
use crate::clock::Clock;
use std::net::SocketAddr;
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SimConfig {
    pub seed: u64,
    pub tenants: Vec<SimTenant>,
}
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SimTenant {
    pub principal: String,
    pub secret: String,
    pub events_per_hour: u32,
}
impl SimConfig {
    pub fn generated(n: usize, events_per_hour: u32, seed: u64) -> Self {
        unimplemented!()
    }
}
#[derive(Clone)]
pub struct Simulator;
pub struct SimServer {
    pub addr: SocketAddr,
}
impl Simulator {
    pub fn new(cfg: SimConfig, clock: Clock) -> Self {
        Simulator
    }
    pub async fn bind(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        unimplemented!()
    }
}
