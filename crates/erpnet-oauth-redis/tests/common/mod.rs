//! What the tests share: a real redis-server, a mock ERP.net and logins through it.
#![allow(dead_code)]

pub mod redis_server;
