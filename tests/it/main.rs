//! Integration tests: the real binary, a real SMTP server over TCP and a real HTTP server
//! standing in for the SMS provider, all on 127.0.0.1.

mod bad_input;
mod cli;
mod e2e_delivery;
mod languages;
mod lifecycle;
mod message_headers;
mod new_type;
mod outbox_faults;
mod quiet_hours;
mod reload;
mod serve_basics;
mod slow_clients;
mod sms_policies;
mod store_suite;
mod support;
mod support_selftest;
