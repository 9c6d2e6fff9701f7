//! `report.html`: the Markdown report as one self-contained HTML file.
//!
//! The Markdown is rendered with `pulldown-cmark` (tables on), and every image it references by a
//! relative path is read and embedded as a `data:image/png;base64,…` URI, so the file opens from
//! disk, anywhere, with no server and no folder beside it. A referenced image that is missing or
//! not a PNG is an error naming it: a report never shows a broken image. Raw HTML in the Markdown
//! is shown as text, never interpreted (`<source>` in a sentence stays visible).

use std::path::Path;

use base64::Engine as _;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

use crate::error::ReportError;

/// The style sheet: readable tables, images at most the page's width.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;display:block;overflow-x:auto}\
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}\
img{max-width:100%;height:auto;border:1px solid #eee}code{font-size:0.92em;background:#f5f5f5;\
padding:0 3px}h1,h2,h3{line-height:1.2}";

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders `markdown` as a complete HTML page titled `title`, reading the images it references
/// (paths relative to `base`, the folder of the Markdown file) and embedding them.
pub fn markdown_to_html(markdown: &str, base: &Path, title: &str) -> Result<String, ReportError> {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    let mut error = None;
    let events: Vec<Event> = Parser::new_ext(markdown, options)
        .map(|event| match event {
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let uri = if dest_url.starts_with("data:") || dest_url.contains("://") {
                    dest_url.to_string()
                } else {
                    match embed(&base.join(dest_url.as_ref())) {
                        Ok(uri) => uri,
                        Err(e) => {
                            error.get_or_insert(e);
                            String::new()
                        }
                    }
                };
                Event::Start(Tag::Image {
                    link_type,
                    dest_url: CowStr::from(uri),
                    title,
                    id,
                })
            }
            Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
            other => other,
        })
        .collect();
    if let Some(e) = error {
        return Err(e);
    }
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, events.into_iter());
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    ))
}

/// A PNG file as a `data:` URI.
fn embed(path: &Path) -> Result<String, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::io(path, e))?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(ReportError::Plot {
            path: path.to_path_buf(),
            message: "the report references it as an image, but it is not a PNG".into(),
        });
    }
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_and_images_are_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let png = crate::plot::bars_png_bytes(
            "t",
            "IoU",
            &[crate::plot::Bar {
                label: "a".into(),
                value: 1.0,
                spread: None,
            }],
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("plots")).unwrap();
        std::fs::write(dir.path().join("plots/a.png"), &png).unwrap();
        let md = "# T <x>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](plots/a.png)\n\n\
                  (published, <source>)\n";
        let html = markdown_to_html(md, dir.path(), "T <x>").unwrap();
        // Raw HTML is text.
        assert!(html.contains("(published, &lt;source&gt;)"), "{html}");
        assert!(html.contains("<title>T &lt;x&gt;</title>"));
        assert!(
            html.contains("<table>") && html.contains("<td>2</td>"),
            "{html}"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        assert!(html.contains(&format!("src=\"data:image/png;base64,{b64}\"")));
        assert!(!html.contains("plots/a.png"));
        // A missing image, or one that is not a PNG, is an error naming it.
        let e = markdown_to_html("![x](plots/b.png)", dir.path(), "T").unwrap_err();
        assert!(e.to_string().contains("plots/b.png"), "{e}");
        std::fs::write(dir.path().join("plots/c.png"), b"GIF89a").unwrap();
        let e = markdown_to_html("![x](plots/c.png)", dir.path(), "T").unwrap_err();
        assert!(e.to_string().contains("not a PNG"), "{e}");
    }
}
