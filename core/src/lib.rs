//! unigate's translation core.
//!
//! Pure functions and small state machines with no proxy-wasm dependency, so everything here
//! builds and tests natively. The filter glue (the root crate) calls [`plan::plan_chat`] on a
//! request body, applies the returned mutations, and hands upstream answers to
//! [`response`]. Time, ids and credentials come in as arguments.
//!
//! Formats meet in one intermediate representation ([`ir`]): each input format has a decoder
//! into it and each upstream API an encoder out of it.

#![forbid(unsafe_code)]

pub mod agent;
pub mod anthropic;
pub mod auth;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod converse;
pub mod credentials;
pub mod detect;
pub mod endpoints;
pub mod error;
pub mod fields;
pub mod files;
pub mod header_map;
pub mod ir;
pub mod openai;
pub mod plan;
pub mod ratelimit;
pub mod response;
pub mod route;
pub mod sigv4;
pub mod stream;
pub mod titan;
pub mod upstream_error;

pub use error::{ErrorType, GatewayError};
