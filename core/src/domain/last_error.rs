//! What an upload's `lastError` says (DESIGN §7, at rest and in answers): one fixed,
//! client-safe text per error code, in this one place. A job's own reason (a database
//! error, what storage or a client's endpoint answered) never reaches the row or an
//! answer; the job logs it with its job and upload ids.
use partway_protocol::ErrorCode;

/// The text shown with `code` in `lastError` and in the error of a `?wait` that saw
/// the job fail.
pub fn last_error_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::IncompleteParts => {
            "storage does not hold every part: upload the missing parts (resume lists them), then complete again"
        }
        ErrorCode::InvalidParts => {
            "storage refused the parts: check each part's ETag and size, upload wrong parts again, then complete again"
        }
        ErrorCode::UploadExpired => {
            "storage no longer has this multipart upload; start a new upload"
        }
        ErrorCode::ServiceUnavailable => {
            "storage or the database could not carry out the operation; retry it, or abort the upload and start again"
        }
        _ => "the operation failed; retry it, or abort the upload and start again",
    }
}

/// `lastError` as shown for a stored code: the text always comes from the table, so
/// rows written before the table existed (with raw reasons in their message column)
/// show the fixed text too. An unknown stored code shows as `INTERNAL_ERROR`.
pub fn shown_last_error(stored_code: &str) -> (ErrorCode, &'static str) {
    let code = ErrorCode::from_code(stored_code).unwrap_or(ErrorCode::InternalError);
    (code, last_error_message(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_fixed_text_and_unknown_codes_are_internal() {
        for code in ErrorCode::all() {
            assert!(!last_error_message(code).is_empty(), "{code}");
        }
        assert_eq!(
            shown_last_error("INCOMPLETE_PARTS"),
            (
                ErrorCode::IncompleteParts,
                last_error_message(ErrorCode::IncompleteParts)
            )
        );
        assert_eq!(
            shown_last_error("database: boom").0,
            ErrorCode::InternalError
        );
    }
}
