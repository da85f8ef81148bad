// Each test module uses only part of these helpers.
#![allow(dead_code)]

pub mod http_recorder;
pub mod smtp;
