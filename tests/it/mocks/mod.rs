//! The upstreams, played on 127.0.0.1 by wiremock servers strict the way the real APIs are: one
//! mock per upstream ([`stream::MockStream`], [`stripe::MockStripe`]), each storing what it is
//! sent, answering like its API, taking scripted faults, signalling each request's arrival, and
//! starting the real binary against itself ([`stream::MockStream::stdio`],
//! [`stripe::MockStripe::stdio`]).

pub mod stream;
pub mod stripe;
