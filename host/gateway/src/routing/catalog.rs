//! Names as clients see them. Tools and prompts of a server (or group) are listed as
//! `<name>__<item>`, or as the server gave them when it is `unprefixed` and no other target lists
//! the same name that way (a clash keeps every side under its prefixed name only; none shadows
//! another; nor do Hangar's own tools, whose names are reserved while they are listed). Resource URIs are never renamed: a read goes to the target that lists the URI or a
//! template matching it.

use std::collections::BTreeMap;

use crate::gateway::SEPARATOR;

/// One target's item names (tools or prompts) as the target lists them.
pub struct Listing<'a> {
    pub target: &'a str,
    pub unprefixed: bool,
    pub names: Vec<&'a str>,
}

/// Every listed name as clients see it, in the listings' order, with the clashes found (item
/// name → the targets that wanted it unprefixed). `reserved` names are Hangar's own (its search
/// tools).
pub fn expose(listings: &[Listing<'_>], reserved: &[&str]) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let clashes = clashes(listings, reserved);
    let mut out = Vec::new();
    for listing in listings {
        for name in &listing.names {
            out.push(if !listing.unprefixed || clashes.contains_key(*name) {
                format!("{}{SEPARATOR}{name}", listing.target)
            } else {
                name.to_string()
            });
        }
    }
    (out, clashes)
}

/// Names that more than one target wants unprefixed, or that an unprefixed target lists and
/// another target's prefixed name equals, or that Hangar reserves.
fn clashes(listings: &[Listing<'_>], reserved: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in listings.iter().filter(|l| l.unprefixed) {
        for name in &l.names {
            wanted.entry(name.to_string()).or_default().push(l.target.to_string());
        }
    }
    if !wanted.is_empty() {
        for l in listings.iter().filter(|l| !l.unprefixed) {
            for name in &l.names {
                let full = format!("{}{SEPARATOR}{name}", l.target);
                if let Some(owners) = wanted.get_mut(&full) {
                    owners.push(l.target.to_string());
                }
            }
        }
    }
    for name in reserved {
        if let Some(owners) = wanted.get_mut(*name) {
            owners.push("hangar".to_string());
        }
    }
    wanted.retain(|_, owners| owners.len() > 1);
    wanted
}

/// Which unprefixed target a client's name means, given the targets that list it unprefixed.
pub fn resolve_unprefixed<'a>(kind: &str, name: &str, listing_it: &[&'a str]) -> Result<&'a str, String> {
    match listing_it {
        [one] => Ok(one),
        [] => Err(format!(
            "unknown {kind} {name:?}: {kind}s are named <server>{SEPARATOR}<name> (or as given, for servers with spec.unprefixed); see the list"
        )),
        many => Err(format!(
            "{kind} {name:?} is listed by {} with spec.unprefixed: the name clashes, so call it as {}",
            many.join(" and "),
            many.iter().map(|t| format!("{t}{SEPARATOR}{name}")).collect::<Vec<_>>().join(" or ")
        )),
    }
}

/// Whether a URI matches an RFC 6570 template's simple form (`{var}` stands for one or more
/// characters other than `/`; `{+var}` and the like for any).
pub fn template_matches(template: &str, uri: &str) -> bool {
    fn matches(t: &str, u: &str) -> bool {
        match t.find('{') {
            None => t == u,
            Some(open) => {
                let Some(close) = t[open..].find('}').map(|c| open + c) else { return t == u };
                if !u.starts_with(&t[..open]) {
                    return false;
                }
                let (var, rest_t, rest_u) = (&t[open + 1..close], &t[close + 1..], &u[open..]);
                let any = var.starts_with(['+', '#', '/', '?', '&', '.', ';']);
                (1..=rest_u.len()).filter(|&n| rest_u.is_char_boundary(n)).any(|n| {
                    let value = &rest_u[..n];
                    (any || !value.contains('/')) && matches(rest_t, &rest_u[n..])
                })
            }
        }
    }
    matches(template, uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing<'a>(target: &'a str, unprefixed: bool, names: &[&'a str]) -> Listing<'a> {
        Listing { target, unprefixed, names: names.to_vec() }
    }

    #[test]
    fn unprefixed_targets_keep_names_unless_they_clash() {
        let (names, clashes) = expose(
            &[
                listing("a", true, &["read", "write"]),
                listing("b", true, &["read", "other"]),
                listing("c", false, &["read"]),
            ],
            &[],
        );
        assert_eq!(names, ["a__read", "write", "b__read", "other", "c__read"]);
        assert_eq!(clashes["read"], ["a", "b"]);
    }

    #[test]
    fn an_unprefixed_name_equal_to_a_prefixed_one_clashes() {
        let (names, clashes) = expose(&[listing("a", true, &["c__x"]), listing("c", false, &["x"])], &[]);
        assert_eq!(names, ["a__c__x", "c__x"]);
        assert_eq!(clashes["c__x"], ["a", "c"]);
    }

    #[test]
    fn a_reserved_name_keeps_a_servers_tool_prefixed() {
        let (names, clashes) = expose(&[listing("a", true, &["search_tools", "x"])], &["search_tools"]);
        assert_eq!(names, ["a__search_tools", "x"]);
        assert_eq!(clashes["search_tools"], ["a", "hangar"]);
    }

    #[test]
    fn resolution_names_the_fix_of_a_clash() {
        assert_eq!(resolve_unprefixed("tool", "x", &["a"]), Ok("a"));
        let e = resolve_unprefixed("tool", "x", &["a", "b"]).unwrap_err();
        assert!(e.contains("a__x or b__x"), "{e}");
        assert!(resolve_unprefixed("prompt", "x", &[]).unwrap_err().starts_with("unknown prompt"));
    }

    #[test]
    fn templates_match_their_uris() {
        assert!(template_matches("test://template/{id}/data", "test://template/123/data"));
        assert!(!template_matches("test://template/{id}/data", "test://template/1/2/data"));
        assert!(!template_matches("test://template/{id}/data", "test://template//data"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("test://static", "test://static"));
        assert!(!template_matches("test://static", "test://static2"));
    }
}
