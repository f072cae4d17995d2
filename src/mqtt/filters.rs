//! MQTT topic filters and what they mean here, without I/O: the syntax
//! check, MQTT's matching rule, and which realtime topics a filter names.
//!
//! Deliveries are published on `<collection>/<record id>` (events) and
//! `<topic>` (custom-topic messages), so a filter is read against those
//! names: `readings`, `readings/#` and `readings/+` all mean the
//! collection topic `readings`; `readings/ID` the record topic; `+` and
//! `#` the custom topics (whose names are one level: no `/`).

/// What a filter names, before it is checked against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// Its first level: a collection, custom or system topic, whole.
    Name(String),
    /// `C/ID` or `C/ID/#`: the record topic `C/ID` when `C` is a
    /// collection; nothing otherwise (custom topics have one level).
    Below(String, String),
    /// A first level wildcard: the custom topics the filter matches.
    Wildcard,
}

/// Why a filter is refused before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not an MQTT topic filter (empty, `#` not last, `+` inside a level).
    Syntax,
    /// `$share/...`: shared subscriptions are not offered.
    Shared,
    /// Deeper than any name delivered here.
    TooDeep,
}

/// Checks the syntax of an MQTT topic filter (MQTT 5 §4.7.1).
pub fn valid(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains('#') && !other.contains('+'),
    })
}

/// MQTT's matching of a topic name by a filter (both already valid).
/// Names starting with `$` are not matched by a leading wildcard.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match level {
            // `#` also matches its parent level: `a/#` matches `a`.
            "#" => return true,
            "+" => {
                if names.next().is_none() {
                    return false;
                }
            }
            literal => {
                if names.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    names.next().is_none()
}

/// What `filter` names, read against the names deliveries use.
pub fn parse(filter: &str) -> Result<Named, Invalid> {
    if filter.starts_with("$share/") {
        return Err(Invalid::Shared);
    }
    if !valid(filter) {
        return Err(Invalid::Syntax);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let first = levels[0];
    if first == "+" || first == "#" {
        // Custom topic names are one level.
        return if matches(filter, "x") {
            Ok(Named::Wildcard)
        } else {
            Err(Invalid::TooDeep)
        };
    }
    let name = first.to_owned();
    match levels[1..] {
        [] | ["#"] | ["+"] | ["+", "#"] => Ok(Named::Name(name)),
        [id] | [id, "#"] => Ok(Named::Below(name, id.to_owned())),
        _ => Err(Invalid::TooDeep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syntax_of_filters() {
        for ok in ["a", "a/b", "a/#", "#", "+", "+/+", "a/+/c", "/a", "a//b"] {
            assert!(valid(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "a\0b"] {
            assert!(!valid(bad), "{bad}");
        }
    }

    #[test]
    fn matching_follows_mqtt() {
        let table = [
            ("readings", "readings", true),
            ("readings/#", "readings", true),
            ("readings/#", "readings/01J", true),
            ("readings/+", "readings", false),
            ("readings/+", "readings/01J", true),
            ("+", "alerts", true),
            ("+", "readings/01J", false),
            ("#", "readings/01J", true),
            ("+/#", "alerts", true),
            ("+/+", "alerts", false),
            ("alerts", "alert", false),
            ("alerts", "alerts/x", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
        ];
        for (filter, name, expected) in table {
            assert_eq!(matches(filter, name), expected, "{filter} on {name}");
        }
    }

    #[test]
    fn what_a_filter_names() {
        let name = |n: &str| Ok(Named::Name(n.into()));
        assert_eq!(parse("readings"), name("readings"));
        assert_eq!(parse("readings/#"), name("readings"));
        assert_eq!(parse("readings/+"), name("readings"));
        assert_eq!(parse("readings/+/#"), name("readings"));
        assert_eq!(
            parse("readings/01J"),
            Ok(Named::Below("readings".into(), "01J".into()))
        );
        assert_eq!(
            parse("readings/01J/#"),
            Ok(Named::Below("readings".into(), "01J".into()))
        );
        assert_eq!(parse("#"), Ok(Named::Wildcard));
        assert_eq!(parse("+"), Ok(Named::Wildcard));
        assert_eq!(parse("+/#"), Ok(Named::Wildcard));
        assert_eq!(parse("+/+"), Err(Invalid::TooDeep));
        assert_eq!(parse("readings/a/b"), Err(Invalid::TooDeep));
        assert_eq!(parse("readings/#/x"), Err(Invalid::Syntax));
        assert_eq!(parse("$share/g/readings"), Err(Invalid::Shared));
    }

    /// Over every name of up to three levels from a small alphabet: a
    /// name matches itself, `#`, `<first>/#` and one `+` per level, and
    /// not a filter one level deeper.
    #[test]
    fn literal_and_wildcard_filters_over_many_names() {
        let parts = ["a", "b1", "c-d", "e_f"];
        let mut names: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
        for _ in 0..2 {
            let longer: Vec<String> = names
                .iter()
                .flat_map(|n| parts.iter().map(move |p| format!("{n}/{p}")))
                .collect();
            names.extend(longer);
        }
        for name in &names {
            let levels: Vec<&str> = name.split('/').collect();
            assert!(matches(name, name));
            assert!(matches("#", name));
            assert!(matches(&format!("{}/#", levels[0]), name));
            let plus = vec!["+"; levels.len()].join("/");
            assert!(matches(&plus, name), "{plus} on {name}");
            assert!(!matches(&format!("{name}/x"), name));
            assert!(!matches(&format!("{plus}/+"), name));
        }
    }
}
