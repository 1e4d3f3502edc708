//! The engine's error type: a refusal (bad request, found before anything was
//! touched) or a failure of a layer below, with what the engine was doing.

use thiserror::Error;

use crate::fault::Step;

#[derive(Debug, Error)]
pub enum EngineError {
    /// The request is wrong; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The kernel refused a change; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// No free address is left where one was asked for.
    #[error("{0}")]
    PoolExhausted(String),
    /// The address asked for is taken.
    #[error("{0}")]
    AddressInUse(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Model(#[from] nicslice_model::ModelError),
    #[error(transparent)]
    Store(#[from] nicslice_store::StoreError),
    #[error(transparent)]
    Kernel(#[from] nicslice_kernel::KernelError),
    /// A test asked this step to fail.
    #[error("injected failure at step {0} (NICSLICE_FAIL_AT)")]
    Injected(Step),
    /// A stop signal (SIGINT, SIGTERM, SIGHUP: its number) came part-way:
    /// undone, as a failure would be. A front end exits with 128 + the number.
    #[error("interrupted by signal {0}; every step done was undone")]
    Interrupted(i32),
    /// An operation failed and undoing it failed too: say both.
    #[error("{error}; undoing the steps already done also failed: {undo}")]
    UndoFailed { error: Box<EngineError>, undo: String },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
