//! Errors and how they are reported.
//!
//! The Go CLI reports every failure through one error string that is built by
//! wrapping (`"error creating interface: [error code 202] ALREADY_EXISTS"`)
//! and then classified by its text: a dpservice status (`[error code N] MSG`)
//! is a *server* error (exit code 2), a gRPC status (`rpc error: code = X
//! desc = Y`) a *grpc* error and anything else a *client* error (exit 1).
//! This module reproduces that behaviour exactly.

use std::fmt;

/// Exit code for failures detected on the client side (or gRPC errors).
pub const CLIENT_ERROR: i32 = 1;
/// Exit code for errors reported by dpservice (and protocol mismatches).
pub const SERVER_ERROR: i32 = 2;

/// A failed command: the Go-style error text plus, for gRPC failures, the
/// gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    text: String,
    grpc_code: Option<i32>,
}

impl CliError {
    /// A client-side error with this message.
    pub fn msg(text: impl Into<String>) -> Self {
        CliError {
            text: text.into(),
            grpc_code: None,
        }
    }

    /// A dpservice status error (`[error code N] MSG`, or `error code N`
    /// without a message, as Go's `StatusError` prints it).
    pub fn status(code: u32, message: &str) -> Self {
        if message.is_empty() {
            CliError::msg(format!("error code {code}"))
        } else {
            CliError::msg(format!("[error code {code}] {message}"))
        }
    }

    /// A gRPC-level failure, printed as grpc-go does.
    pub fn grpc(status: &tonic::Status) -> Self {
        let code = status.code();
        CliError {
            text: format!(
                "rpc error: code = {} desc = {}",
                go_code_name(code),
                status.message()
            ),
            grpc_code: Some(code as i32),
        }
    }

    /// Wraps the error like Go's `fmt.Errorf("<ctx>: %w", err)`.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.text = format!("{ctx}: {}", self.text);
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// How the Go CLI's `main` reports this error.
    pub fn report(&self) -> Report {
        if self.text.contains("Unimplemented desc") {
            let text =
                "error in gRPC, client and server are probably using different proto version";
            return Report {
                source: "client",
                code: 1000,
                message: text.to_owned(),
                text: text.to_owned(),
                exit_code: SERVER_ERROR,
            };
        }
        let exit_code = if self.text.contains("error code") {
            SERVER_ERROR
        } else {
            CLIENT_ERROR
        };
        let (source, code, message) = match self.parse() {
            Some(p) => p,
            None => (
                "client",
                999,
                format!("could not parse error: {}", self.text),
            ),
        };
        Report {
            source,
            code,
            message,
            text: self.text.clone(),
            exit_code,
        }
    }

    /// Go's `parseError`.
    fn parse(&self) -> Option<(&'static str, u32, String)> {
        let s = &self.text;
        if s.contains("[error code") {
            // ^(.*)\[error code (\d+)] (.*)$ -- the greedy prefix takes the
            // last occurrence that matches.
            if s.contains('\n') {
                return None;
            }
            let mut from = s.len();
            while let Some(pos) = s[..from].rfind("[error code ") {
                let rest = &s[pos + "[error code ".len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() {
                    if let Some(msg) = rest[digits.len()..].strip_prefix("] ") {
                        return digits
                            .parse()
                            .ok()
                            .map(|code| ("server", code, msg.to_owned()));
                    }
                }
                from = pos;
            }
            None
        } else if s.contains("rpc error") {
            if !s.contains("rpc error: ") || s.contains('\n') {
                return None;
            }
            // status.Convert of a wrapped error keeps the code and takes the
            // whole text as message; the part after "desc = " is reported.
            let code = self.grpc_code.unwrap_or(2) as u32;
            let message = match s.find("desc = ") {
                Some(i) => s[i + 7..].to_owned(),
                None => s.chars().skip(6).collect(),
            };
            Some(("grpc", code, message))
        } else {
            Some(("client", 1000, s.clone()))
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CliError {}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::grpc(&s)
    }
}

/// The outcome of classifying an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `client`, `server` or `grpc`.
    pub source: &'static str,
    pub code: u32,
    pub message: String,
    /// The full error text (printed as `<source> error: <text>`).
    pub text: String,
    pub exit_code: i32,
}

/// grpc-go's `codes.Code.String()`.
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_is_parsed_and_exits_2() {
        let e = CliError::status(202, "ALREADY_EXISTS").context("error creating interface");
        assert_eq!(
            e.text(),
            "error creating interface: [error code 202] ALREADY_EXISTS"
        );
        let r = e.report();
        assert_eq!(
            (r.source, r.code, r.message.as_str(), r.exit_code),
            ("server", 202, "ALREADY_EXISTS", 2)
        );
    }

    #[test]
    fn status_without_message() {
        let r = CliError::status(205, "").context("x").report();
        // contains "error code" (exit 2) but not "[error code": client/1000
        assert_eq!((r.source, r.code, r.exit_code), ("client", 1000, 2));
        assert_eq!(r.message, "x: error code 205");
    }

    #[test]
    fn grpc_error_is_parsed_and_exits_1() {
        let e = CliError::grpc(&tonic::Status::aborted("not initialized"))
            .context("error checking initialization status");
        assert_eq!(
            e.text(),
            "error checking initialization status: rpc error: code = Aborted desc = not initialized"
        );
        let r = e.report();
        assert_eq!(
            (r.source, r.code, r.message.as_str(), r.exit_code),
            ("grpc", 10, "not initialized", 1)
        );
    }

    #[test]
    fn unimplemented_is_a_protocol_mismatch() {
        let r = CliError::grpc(&tonic::Status::unimplemented(""))
            .context("error getting nat")
            .report();
        assert_eq!(r.source, "client");
        assert_eq!(r.code, 1000);
        assert_eq!(r.exit_code, 2);
        assert_eq!(
            r.text,
            "error in gRPC, client and server are probably using different proto version"
        );
    }

    #[test]
    fn client_error() {
        let r = CliError::msg("required flag(s) \"id\" not set").report();
        assert_eq!((r.source, r.code, r.exit_code), ("client", 1000, 1));
        assert_eq!(r.message, "required flag(s) \"id\" not set");
    }
}
