//! Integration tests of the bkg-db server: one test binary for the crate.

mod admin;
mod audit;
mod export;
mod flight;
mod hardening;
mod pgbench;
mod pgwire;
mod psql;
mod realtime;
mod rest;
mod rls;
mod roles;
mod row_locks;
mod scan;
mod server;
mod slt;
mod storage;
