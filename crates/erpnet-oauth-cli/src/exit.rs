//! Exit codes and the one-line error every failure prints: a contract with users' scripts.

use std::fmt;
use std::process::ExitCode;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0, and nothing on stderr: stdout was closed by its reader (EPIPE, as in `status | head -1`). The
    /// command stops there, as other Unix tools do; what it stored before stays stored.
    StdoutClosed = 0,
    /// 2: usage or configuration error.
    Usage = 2,
    /// 3: login required (no stored tokens, or the refresh token was rejected).
    LoginRequired = 3,
    /// 4: the server answered with an error or broke the protocol.
    Server = 4,
    /// 5: network failure or timeout.
    Network = 5,
}

/// A failure: its exit code and one line for stderr (never a token or secret).
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { code: Code::Usage, message: message.into() }
    }

    pub fn login_required(message: impl Into<String>) -> Self {
        Failure { code: Code::LoginRequired, message: message.into() }
    }

    pub fn server(message: impl Into<String>) -> Self {
        Failure { code: Code::Server, message: message.into() }
    }

    pub fn network(message: impl Into<String>) -> Self {
        Failure { code: Code::Network, message: message.into() }
    }

    /// The failure for an error writing to stdout: [`Code::StdoutClosed`] when its reader has gone (EPIPE).
    pub fn stdout(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Failure { code: Code::StdoutClosed, message: String::new() }
        } else {
            Failure::usage(format!("cannot write to stdout: {error}"))
        }
    }

    /// Whether the failure is to end the process quietly with status 0 ([`Code::StdoutClosed`]).
    pub fn is_quiet(&self) -> bool {
        self.code == Code::StdoutClosed
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the message holds, and no control or bidi character: a message may quote a
        // server (issue 13). The core's errors escape it already; this catches every other path.
        f.write_str(&erpnet_oauth_core::escape(&self.message.replace(['\n', '\r'], " ")))
    }
}
