//! Pure domain rules of partway (DESIGN §2): part planning, the upload status
//! machine, input validation, resume tokens, progress arithmetic and the error-code
//! vocabulary.
//!
//! Kept free of I/O so the API, the worker and the tests share one definition of
//! every rule and can exercise it without a database, queue or storage.

pub mod error;
pub mod plan;
pub mod progress;
pub mod status;
pub mod token;
pub mod validate;

pub use error::*;
pub use plan::*;
pub use progress::*;
pub use status::*;
pub use token::*;
pub use validate::*;
