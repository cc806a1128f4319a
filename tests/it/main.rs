//! tfbn's integration tests, one binary with a module per concern.

mod apply;
mod architecture;
mod bad_input;
mod bn_goldens;
mod candle_consumer;
mod cli;
mod common;
mod corpus;
mod declared;
mod export;
mod facade;
mod faults;
mod found;
mod fuzz_regressions;
mod hyper;
mod keras;
mod lint;
mod numeric_snapshot;
mod proptests;
mod snapshots;
mod tf_live;
mod verify;
mod wild;
