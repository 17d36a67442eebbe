//! unigate's translation core.
//!
//! Pure functions and small state machines with no proxy-wasm dependency, so everything here
//! builds and tests natively. The filter glue (the root crate) calls [`plan::plan`] on a
//! request body, applies the returned mutations, and hands upstream answers to
//! [`response`]. Time, ids and credentials come in as arguments.
//!
//! Formats meet in one intermediate representation ([`ir`]): each wire format ([`formats`])
//! has a decoder into it and an encoder out of it; a front door ([`doors`]) picks the
//! formats a request arrives in and leaves in.

#![forbid(unsafe_code)]

pub mod auth;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod credentials;
pub mod detect;
pub mod doors;
pub mod endpoints;
pub mod error;
pub mod files;
pub mod flow;
pub mod formats;
pub mod header_map;
pub mod ir;
pub mod json;
pub mod plan;
pub mod ratelimit;
pub mod response;
pub mod route;
pub mod sigv4;
pub mod stream;
pub mod upstream_error;

pub use error::{ErrorType, GatewayError};
