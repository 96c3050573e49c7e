//! Sections of BENCHMARKS.md that runs of their own write, between named
//! markers, so that other runs keep them.

/// The markers around section `name`.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}: begin -->"),
        format!("<!-- {name}: end -->"),
    )
}

/// `body` between the markers of section `name`.
pub fn wrap(name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    format!("{begin}\n{}\n{end}\n", body.trim_end())
}

/// Puts `section` (wrapped, named `name`) into `markdown`, in place of the
/// one there, or at the end.
pub fn splice(markdown: &str, name: &str, section: &str) -> String {
    let (begin, end) = markers(name);
    match (markdown.find(&begin), markdown.find(&end)) {
        (Some(a), Some(b)) if a < b => {
            let stop = b + end.len();
            let rest = markdown[stop..]
                .strip_prefix('\n')
                .unwrap_or(&markdown[stop..]);
            format!("{}{section}{rest}", &markdown[..a])
        }
        _ => format!("{}\n\n{section}", markdown.trim_end()),
    }
}

/// Section `name` of `markdown`, markers included, if it has one.
pub fn kept(markdown: &str, name: &str) -> Option<String> {
    let (begin, end) = markers(name);
    let a = markdown.find(&begin)?;
    let b = markdown.find(&end)?;
    (a < b).then(|| format!("{}\n", &markdown[a..b + end.len()]))
}

/// The sections written by runs of their own, and their keys in
/// bench-results.json.
pub const OWN_RUNS: [(&str, &[&str]); 3] = [
    ("steady", &["steady", "steady_runs"]),
    ("restart", &["projections"]),
    ("failover", &["failover"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_the_one_before_and_is_kept_by_others() {
        let first = splice("# Report\n\nbody\n", "x", &wrap("x", "A"));
        assert_eq!(
            first,
            "# Report\n\nbody\n\n<!-- x: begin -->\nA\n<!-- x: end -->\n"
        );
        let second = splice(&first, "x", &wrap("x", "B"));
        assert_eq!(
            second,
            "# Report\n\nbody\n\n<!-- x: begin -->\nB\n<!-- x: end -->\n"
        );
        assert_eq!(
            kept(&second, "x").as_deref(),
            Some("<!-- x: begin -->\nB\n<!-- x: end -->\n")
        );
        assert_eq!(kept(&second, "y"), None);
    }
}
