//! How a download URL presents the object (DESIGN §7): always as an attachment under
//! the upload's filename, whatever content type the uploader chose, so an uploaded
//! HTML page never renders from the storage origin.

/// `Content-Disposition` for a download of `filename` (RFC 6266): `attachment` with a
/// quoted ASCII `filename` (characters that are not printable ASCII, and `"`, `\` and
/// `%`, become `_`) and, when that is not the name itself, `filename*=UTF-8''…` with the
/// exact name percent-encoded (RFC 8187).
pub fn attachment_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%') => c,
            _ => '_',
        })
        .collect();
    let fallback = if fallback.trim().is_empty() {
        "download".to_string()
    } else {
        fallback
    };
    if fallback == filename {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let mut encoded = String::with_capacity(filename.len() * 3);
    for byte in filename.bytes() {
        // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~".
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_quoted_and_others_get_an_encoded_form_and_a_fallback() {
        assert_eq!(
            attachment_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            attachment_disposition("résumé 2026.html"),
            "attachment; filename=\"r_sum_ 2026.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026.html"
        );
        // Nothing can end the quoted string or add a parameter or a header line.
        let hostile = attachment_disposition("a\"; filename=evil.html\r\nX-Bad: 1\\%.txt");
        assert_eq!(
            hostile,
            "attachment; filename=\"a_; filename=evil.html__X-Bad: 1__.txt\"; \
             filename*=UTF-8''a%22%3B%20filename%3Devil.html%0D%0AX-Bad%3A%201%5C%25.txt"
        );
        assert!(!hostile.contains('\r') && !hostile.contains('\n'));
        assert!(hostile.is_ascii());
        assert_eq!(
            attachment_disposition("日本"),
            "attachment; filename=\"__\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC"
        );
    }
}
