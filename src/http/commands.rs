//! `GET /commands`: the viewers' page of what chat can type, made on each request from the catalogue
//! and the live routes (a parameter is marked as soon as it is routed) in the template
//! `overlay/commands.html`, read from disk when there and compiled in otherwise. Open like the
//! overlay: it shows nothing `/api/catalog` and `/api/state` do not. No script; every name is escaped.
//!
//! Knows the lessons' data (`command::help`); not chat's words, the state's registers or OSC.

use std::fmt::Write;

use warp::Filter;
use warp::reply::Response;

use super::{ApiError, HttpContext, with};
use crate::catalog::{Catalog, Output, Variable};
use crate::command::{Sheet, help};

/// The page's template compiled in, served when `overlay/commands.html` is not on disk.
pub const EMBEDDED_COMMANDS: &str = include_str!("../../overlay/commands.html");

pub fn route(ctx: &HttpContext) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + use<> {
    warp::path!("commands").and(warp::get()).and(with(ctx.clone())).then(page)
}

async fn page(ctx: HttpContext) -> Response {
    use warp::Reply;
    let path = ctx.overlay_dir.join("commands.html");
    let template = tokio::fs::read_to_string(path).await.unwrap_or_else(|_| EMBEDDED_COMMANDS.to_owned());
    let routes: Option<Vec<(Output, Variable)>> =
        ctx.coord.read(|state| state.routes().map(|(o, r)| (o.clone(), r.variable.clone())).collect());
    let Some(routes) = routes else {
        return ApiError::Unavailable("shutting down".into()).into_response();
    };
    let html = render(&template, &ctx.catalog, &routes);
    // `no-cache`: the routed marks change while the show runs.
    warp::reply::with_header(warp::reply::html(html), "cache-control", "no-cache").into_response()
}

/// The page: `template` with its `<!-- cvbot:… -->` places filled from `catalog` and the routes now.
pub fn render(template: &str, catalog: &Catalog, routes: &[(Output, Variable)]) -> String {
    let routed: Vec<Variable> = routes.iter().map(|(_, v)| v.clone()).collect();
    let value = help::example_value(catalog.value_max());
    let name = help::example(catalog, &routed).map_or_else(|| "module#1.parameter".to_owned(), |v| v.to_string());
    template
        .replace("<!-- cvbot:max -->", &catalog.value_max().to_string())
        .replace("<!-- cvbot:example -->", &escape(&format!("{name}: {value}")))
        .replace("<!-- cvbot:example-spaced -->", &escape(&format!("{name} {value}")))
        .replace("<!-- cvbot:routed -->", &routed_now(routes))
        .replace("<!-- cvbot:modules -->", &modules(&help::sheets(catalog, &routed)))
}

fn routed_now(routes: &[(Output, Variable)]) -> String {
    if routes.is_empty() {
        return "<p>Nothing is routed right now. Once a moderator routes an output, its parameter is marked below: \
                typing that one moves something.</p>"
            .to_owned();
    }
    let mut html = String::from("<p>Typing these moves something:</p>\n<ul class=\"routed-now\">\n");
    for (output, variable) in routes {
        let _ =
            writeln!(html, "<li><code>{}</code> on {}</li>", escape(&variable.to_string()), escape(output.as_str()));
    }
    html.push_str("</ul>");
    html
}

fn modules(sheets: &[Sheet]) -> String {
    let mut html = String::from(
        "<p class=\"legend\"><strong class=\"routed\">Marked</strong> parameters are routed now.</p>\n\
         <table class=\"modules\">\n<thead><tr><th scope=\"col\">module</th><th scope=\"col\">instances</th>\
         <th scope=\"col\">parameters</th></tr></thead>\n<tbody>\n",
    );
    for sheet in sheets {
        let instances = match sheet.instances {
            1 => "#1 (or no number)".to_owned(),
            n => format!("#1 to #{n}"),
        };
        let _ = write!(html, "<tr><th scope=\"row\">{}</th><td>{instances}</td><td>", escape(&sheet.module));
        for (parameter, routed) in &sheet.parameters {
            let _ = write!(html, "{} ", marked(&escape(parameter), *routed));
        }
        let jacks = format!("inputJack#1 to #{}", sheet.max_input_jacks);
        let _ = writeln!(html, "<span class=\"jacks\">{}</span></td></tr>", marked(&jacks, sheet.jack_routed));
    }
    html.push_str("</tbody>\n</table>");
    html
}

fn marked(html: &str, routed: bool) -> String {
    if routed { format!("<strong class=\"routed\">{html}</strong>") } else { html.to_owned() }
}

/// Text as HTML: the catalogue's names are letters, digits, `#` and `_`, but a page never trusts that.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(pairs: &[(&str, &str)]) -> Vec<(Output, Variable)> {
        let c = Catalog::builtin();
        pairs.iter().map(|(o, v)| (c.output(o).expect("output"), c.parse_variable(v).expect("variable"))).collect()
    }

    #[test]
    fn the_page_fills_every_place_in_the_template_and_marks_routed_parameters() {
        let c = Catalog::builtin();
        let html = render(EMBEDDED_COMMANDS, &c, &routes(&[("es9out#1", "doorway#1.threshold")]));
        assert!(!html.contains("<!-- cvbot:"), "every place filled");
        let cases = [
            "<b>0 to 127</b>",
            "<pre><code>doorway#1.threshold: 89\n!cv doorway#1.threshold 89</code></pre>",
            "doorway#1.threshold: 89 over 2s",
            "<li><code>doorway#1.threshold</code> on es9out#1</li>",
            "<tr><th scope=\"row\">doorway</th><td>#1 to #8</td><td><strong class=\"routed\">threshold</strong> gain \
             background foreground <span class=\"jacks\">inputJack#1 to #16</span></td></tr>",
            "<tr><th scope=\"row\">arch</th><td>#1 to #8</td><td><span class=\"jacks\">inputJack#1 to #16</span></td></tr>",
        ];
        for part in cases {
            assert!(html.contains(part), "{part} in\n{html}");
        }
        for (module, _) in c.modules() {
            assert!(html.contains(&format!("<th scope=\"row\">{module}</th>")), "{module}");
        }
        let unrouted = render(EMBEDDED_COMMANDS, &c, &[]);
        assert!(unrouted.contains("Nothing is routed right now") && !unrouted.contains("<strong class=\"routed\">t"));
        assert!(unrouted.contains("<code>bridge#1.crossfade: 89"), "the first catalogue parameter as the example");
    }

    #[test]
    fn names_are_escaped_as_html() {
        assert_eq!(escape("<b>\"a\" & 'b'</b>"), "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;");
        let text =
            r#"{"format": 1, "modules": [{"name": "solo", "instances": 1, "parameters": ["x"]}], "outputs": []}"#;
        let c = Catalog::parse(text, crate::catalog::CatalogSource::Embedded).expect("valid");
        assert!(render("<!-- cvbot:modules -->", &c, &[]).contains("<td>#1 (or no number)</td>"));
    }
}
