//! The command-line client side of `unigate`: commands that talk to a running gateway
//! (`chat`, `models`, `files`) and local helpers (`config`, `aws`).

pub mod aws;
pub mod chat;
pub mod config;
pub mod files;
pub mod http;
pub mod models;
