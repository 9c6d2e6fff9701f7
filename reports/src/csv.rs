//! The small piece of CSV (RFC 4180) this crate reads and writes: comma-separated fields, fields
//! quoted with `"` when they hold a comma, a quote or a line break, quotes doubled inside quotes.
//!
//! The reports write a handful of rows; a CSV crate (or polars' `csv` feature, which pulls in its
//! IO and streaming crates) would cost more build time than it saves.

/// One field, quoted when it has to be.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// One line (fields joined by commas, `\n` at the end).
pub fn row<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Parses CSV text into rows of fields. Empty lines are skipped; `\r\n` line ends are accepted.
///
/// Returns an error message (with the 1-based line) for a quote that is never closed or text
/// right after a closing quote.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut after_quote = false;
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => {
                    in_quotes = false;
                    after_quote = true;
                }
                '\n' => {
                    line += 1;
                    cur.push(c);
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                after_quote = false;
                row_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if row_has_content || !cur.is_empty() || after_quote {
                    fields.push(std::mem::take(&mut cur));
                    rows.push(std::mem::take(&mut fields));
                }
                after_quote = false;
                row_has_content = false;
                line += 1;
            }
            '"' if cur.is_empty() && !after_quote => {
                in_quotes = true;
                row_has_content = true;
            }
            _ if after_quote => {
                return Err(format!("line {line}: text after a closing quote"));
            }
            _ => {
                cur.push(c);
                row_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err(format!("line {line}: a quoted field is never closed"));
    }
    if row_has_content || !cur.is_empty() || after_quote {
        fields.push(cur);
        rows.push(fields);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", ""];
        let text = row(&fields);
        assert_eq!(text, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed, vec![fields.map(String::from).to_vec()]);
    }

    #[test]
    fn crlf_blank_lines_and_errors() {
        let parsed = parse("a,b\r\n\r\n1,2\r\n").unwrap();
        assert_eq!(parsed, vec![vec!["a", "b"], vec!["1", "2"]]);
        assert!(parse("a,\"b\n").unwrap_err().contains("never closed"));
        assert!(parse("a,\"b\"c\n").unwrap_err().contains("line 1"));
    }
}
