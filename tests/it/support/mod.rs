// Each test module uses only part of these helpers.
#![allow(dead_code)]

pub mod gateway;
pub mod herald;
pub mod http_recorder;
pub mod payloads;
pub mod smtp;
