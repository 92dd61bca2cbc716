//! What can go wrong in `pigeon ctl`, each with the exit code rabbitmqctl gives it.
//!
//! rabbitmqctl's codes are the BSD `sysexits` ones (`RabbitMQ.CLI.Core.ExitCodes` in
//! deps/rabbitmq_cli): 64 usage, 65 data error (bad argument, no such vhost), 67 no such user,
//! 69 unavailable (node down, and any other `{:error, _}`), 70 software error, 75 temporary
//! failure (timeout). Scripts test these, so each error carries its code.

use std::process::ExitCode;

/// A failed `pigeon ctl` command: one line for stderr and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Wrong command line (unknown command or option, missing or extra arguments): 64.
    #[error("{0}")]
    Usage(String),
    /// A bad argument or a missing object named by one (vhost, queue...): 65.
    #[error("{0}")]
    Data(String),
    /// The user named does not exist: 67.
    #[error("{0}")]
    NoUser(String),
    /// The node cannot be reached or refused the operation: 69.
    #[error("{0}")]
    Unavailable(String),
    /// The node answered something unexpected, or the object already exists: 70.
    #[error("{0}")]
    Software(String),
    /// The node did not answer in time: 75.
    #[error("{0}")]
    TempFail(String),
}

impl CtlError {
    /// rabbitmqctl's exit code for this error.
    pub fn code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 64,
            CtlError::Data(_) => 65,
            CtlError::NoUser(_) => 67,
            CtlError::Unavailable(_) => 69,
            CtlError::Software(_) => 70,
            CtlError::TempFail(_) => 75,
        }
    }

    /// The process's exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// A command's result.
pub type CtlResult<T = ()> = Result<T, CtlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rabbitmqctls() {
        assert_eq!(CtlError::Usage(String::new()).code(), 64);
        assert_eq!(CtlError::Data(String::new()).code(), 65);
        assert_eq!(CtlError::NoUser(String::new()).code(), 67);
        assert_eq!(CtlError::Unavailable(String::new()).code(), 69);
        assert_eq!(CtlError::Software(String::new()).code(), 70);
        assert_eq!(CtlError::TempFail(String::new()).code(), 75);
    }
}
