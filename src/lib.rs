//! sasnp — unscheduled-care (SNP) slot search, holds, bookings and CPTS statistics for the
//! SAS of Pays de la Loire. The binary (`src/main.rs`) only parses the command line; everything
//! else is wired here so that tests and benches start the real thing.

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod geo;
pub mod http;
pub mod index;
pub mod ingest;
pub mod startup;
pub mod stats;
pub mod store;
pub mod tasks;
