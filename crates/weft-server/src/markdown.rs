//! Markdown to HTML for the UI and the `<weft-run>` widget: `pulldown-cmark` (CommonMark with
//! tables and strikethrough) renders it, `ammonia` then keeps only safe tags, attributes and
//! URL schemes. A run's output may hold text a tool scraped from anywhere, so no `<script>`,
//! event handler (`onerror=`), `style` or `javascript:` URL ever leaves here.

use pulldown_cmark::{Options, Parser, html};

/// `markdown` as HTML that is safe to put into a page.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&raw)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn markdown_renders_tables_headings_and_line_breaks() {
        let html = to_safe_html(
            "# Found\n\n**9** places\n\n## Top Cities\n\n| city | n |\n|---|---|\n| Denver | 3 |\n",
        );
        assert!(html.contains("<h1>Found</h1>"), "{html}");
        assert!(html.contains("<h2>Top Cities</h2>"), "{html}");
        assert!(html.contains("<td>Denver</td>"), "{html}");
        assert!(html.contains("<strong>9</strong>"), "{html}");
    }

    #[test]
    fn scraped_html_cannot_run_script() {
        let html = to_safe_html(
            "Hi <script>alert(1)</script> <img src=x onerror=\"alert(2)\"> \
             [click](javascript:alert(3)) <a href=\"javascript:alert(4)\">x</a> \
             <iframe src=\"https://evil.example\"></iframe> <b style=\"x\" onclick=\"y\">b</b>",
        );
        for bad in [
            "<script",
            "alert(1)",
            "onerror",
            "javascript:",
            "<iframe",
            "onclick",
            "style=",
        ] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("<b>b</b>"), "{html}");
    }
}
