//! Integration tests: the real binary, a real SMTP server over TCP and a real HTTP server
//! standing in for the SMS provider, all on 127.0.0.1.

mod cli;
mod new_type;
mod reload;
mod serve_basics;
mod support;
mod support_selftest;
