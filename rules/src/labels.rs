//! Consul tags to a tree of labels, as Traefik's label parser builds one: the tags that start
//! with `<prefix>.` and hold a `=` become labels (`http.routers.web.rule` → `Host(...)`), split on
//! '.' (and `name[0]` into `name` and `[0]`) into a tree whose children are matched without
//! regard to case, as Traefik matches them.
//!
//! Where Traefik keeps the last of two tags with the same key, a [`Node`] keeps the first and
//! records the clash when the values differ, so the dialect can reject what the clash belongs to
//! instead of guessing which one the operator meant.
//!
//! Not for: knowing what a key means; dialects walk the tree with [`Fields`].

use std::collections::BTreeMap;

/// The value of one label and the tag it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub value: String,
    /// The tag as registered, for error reports.
    pub tag: String,
}

/// One node of the label tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// The name as first written (matching is case-insensitive).
    pub name: String,
    /// The value given to this node itself, if any.
    pub leaf: Option<Leaf>,
    /// A second tag that gave this node a different value.
    pub clash: Option<Leaf>,
    pub children: Vec<Node>,
}

/// An option reported and not acted on: the tag that set it and why it is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub tag: String,
    pub message: String,
}

/// The labels of one instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labels {
    /// The root: its children are the first key segments (`enable`, `http`, `frontend`...).
    pub root: Node,
    /// Tags under the prefix that are not `key=value`, or have an empty key segment.
    pub malformed: Vec<String>,
    /// Every label as a flat `key → value` map, keys in the generic `traefik.` form (what
    /// Traefik's default-rule template sees as `.Labels`).
    pub flat: BTreeMap<String, String>,
}

impl Labels {
    /// Whether any label sits under the first segment `name` (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        self.root.child(name).is_some()
    }
}

/// Reads the tags under `<prefix>.`.
pub(crate) fn parse(tags: &[String], prefix: &str) -> Labels {
    let mut labels = Labels::default();
    let dotted = format!("{prefix}.");
    let mut pairs: Vec<(&str, &str, &str)> = Vec::new();
    for tag in tags {
        let Some(rest) = tag.strip_prefix(dotted.as_str()) else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            labels.malformed.push(tag.clone());
            continue;
        };
        if key.split('.').any(str::is_empty) {
            labels.malformed.push(tag.clone());
            continue;
        }
        labels.flat.insert(format!("traefik.{key}"), value.to_string());
        pairs.push((key, value, tag));
    }
    // Traefik decodes keys in sorted order; the first spelling of a name names the node.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value, tag) in pairs {
        let path = split_key(key);
        labels.root.insert(&path, value, tag);
    }
    labels
}

/// `a.b[0].c` → `["a", "b", "[0]", "c"]`, as Traefik's label parser splits keys.
fn split_key(key: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for part in key.split('.') {
        match part.find('[') {
            Some(open) if open > 0 && part.ends_with(']') => {
                parts.push(&part[..open]);
                parts.push(&part[open..]);
            }
            _ => parts.push(part),
        }
    }
    parts
}

impl Node {
    fn insert(&mut self, path: &[&str], value: &str, tag: &str) {
        let Some((first, rest)) = path.split_first() else {
            let leaf = Leaf {
                value: value.to_string(),
                tag: tag.to_string(),
            };
            match &self.leaf {
                None => self.leaf = Some(leaf),
                Some(existing) if existing.value != leaf.value && self.clash.is_none() => {
                    self.clash = Some(leaf);
                }
                Some(_) => {}
            }
            return;
        };
        let index = match self
            .children
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(first))
        {
            Some(i) => i,
            None => {
                self.children.push(Node {
                    name: (*first).to_string(),
                    ..Node::default()
                });
                self.children.len() - 1
            }
        };
        self.children[index].insert(rest, value, tag);
    }

    /// The child named `name`, case-insensitively.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every leaf under this node (itself included), depth first.
    pub fn leaves(&self) -> Vec<&Leaf> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a Leaf>) {
        if let Some(leaf) = &self.leaf {
            out.push(leaf);
        }
        for child in &self.children {
            child.collect_leaves(out);
        }
    }

    /// The first value clash under this node: the tag given second, and the value it clashed with.
    pub fn first_clash(&self) -> Option<(&Leaf, &Leaf)> {
        if let (Some(first), Some(second)) = (&self.leaf, &self.clash) {
            return Some((first, second));
        }
        self.children.iter().find_map(Node::first_clash)
    }

    /// The first leaf under this node (its own value first), the tag to blame for the whole node.
    pub fn first_leaf(&self) -> Option<&Leaf> {
        self.leaves().first().copied()
    }

    /// [`Node::first_clash`] as the dialects report it: the leaf given second (the one to blame)
    /// and the first and second values.
    pub fn clash_values(&self) -> Option<(&Leaf, String, String)> {
        let (first, second) = self.first_clash()?;
        Some((second, first.value.clone(), second.value.clone()))
    }

    /// The subtree as `lowercase.relative.key → value`, for comparing what two instances say.
    /// Keys under `skip` (lowercase, relative) are left out.
    pub fn canonical(&self, skip: &[&str]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        self.collect_canonical(String::new(), skip, &mut out);
        out
    }

    fn collect_canonical(&self, path: String, skip: &[&str], out: &mut BTreeMap<String, String>) {
        if skip
            .iter()
            .any(|s| path == *s || path.starts_with(&format!("{s}.")))
        {
            return;
        }
        if let Some(leaf) = &self.leaf {
            out.insert(path.clone(), leaf.value.clone());
        }
        for child in &self.children {
            let name = child.name.to_ascii_lowercase();
            let key = if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            };
            child.collect_canonical(key, skip, out);
        }
    }
}

/// Walks the children of one node, remembering which were read so the rest can be reported as
/// unknown.
pub(crate) struct Fields<'a> {
    node: &'a Node,
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    pub fn new(node: &'a Node) -> Self {
        Fields {
            node,
            used: vec![false; node.children.len()],
        }
    }

    /// The child `name` (case-insensitive), marked as read.
    pub fn take(&mut self, name: &str) -> Option<&'a Node> {
        let index = self
            .node
            .children
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))?;
        self.used[index] = true;
        Some(&self.node.children[index])
    }

    /// The value of the child `name`, marked as read. A child that only has children of its own
    /// answers `None` here and is reported by [`Fields::unknown`] only if never taken.
    pub fn value(&mut self, name: &str) -> Option<&'a Leaf> {
        self.take(name).and_then(|n| n.leaf.as_ref())
    }

    /// Takes each `(option, why)` child present and notes every leaf under it with `why`: options
    /// read only to say they are ignored.
    pub fn note_ignored(&mut self, options: &[(&str, &str)], notes: &mut Vec<Note>) {
        for (option, why) in options {
            if let Some(node) = self.take(option) {
                for leaf in node.leaves() {
                    notes.push(Note {
                        tag: leaf.tag.clone(),
                        message: why.to_string(),
                    });
                }
            }
        }
    }

    /// Notes every leaf under a child never taken as `"<name>" is not a <what>`.
    pub fn note_unknown(&self, what: &str, notes: &mut Vec<Note>) {
        for unknown in self.unknown() {
            for leaf in unknown.leaves() {
                notes.push(Note {
                    tag: leaf.tag.clone(),
                    message: format!("{:?} is not a {what}", unknown.name),
                });
            }
        }
    }

    /// The children never taken.
    pub fn unknown(&self) -> Vec<&'a Node> {
        let node: &'a Node = self.node;
        node.children
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(child, _)| child)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn tags_under_the_prefix_become_a_tree() {
        let labels = parse(
            &tags(&[
                "traefik.http.routers.web.rule=Host(`a`)",
                "traefik.http.Routers.web.entrypoints=http",
                "traefik.enable=true",
                "other=1",
                "traefikx.enable=true",
                "traefik.bare",
            ]),
            "traefik",
        );
        let http = labels.root.child("HTTP").expect("http");
        let web = http.child("routers").and_then(|r| r.child("web")).expect("web");
        assert_eq!(
            web.child("rule")
                .and_then(|n| n.leaf.as_ref())
                .map(|l| l.value.as_str()),
            Some("Host(`a`)")
        );
        assert_eq!(web.children.len(), 2);
        assert!(labels.has("enable"));
        assert_eq!(labels.malformed, ["traefik.bare"]);
        assert_eq!(
            labels.flat.get("traefik.enable").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn values_keep_everything_after_the_first_equals_sign() {
        let labels = parse(
            &tags(&["traefik.http.routers.r.rule=Query(`a`, `b=c`)"]),
            "traefik",
        );
        let leaf = labels.root.leaves()[0];
        assert_eq!(leaf.value, "Query(`a`, `b=c`)");
    }

    #[test]
    fn clashing_values_are_recorded_repeats_are_not() {
        let labels = parse(
            &tags(&["traefik.a.b=1", "traefik.A.b=2", "traefik.a.c=1", "traefik.a.c=1"]),
            "traefik",
        );
        let (first, second) = labels.root.first_clash().expect("clash");
        assert_eq!((first.value.as_str(), second.value.as_str()), ("2", "1"));
        assert_eq!(labels.root.child("a").map(|a| a.children.len()), Some(2));
    }

    #[test]
    fn indexes_and_empty_segments() {
        let labels = parse(
            &tags(&["traefik.x.domains[0].main=a", "traefik.x..y=1"]),
            "traefik",
        );
        let x = labels.root.child("x").expect("x");
        assert!(x.child("domains").and_then(|d| d.child("[0]")).is_some());
        assert_eq!(labels.malformed, ["traefik.x..y=1"]);
    }

    #[test]
    fn canonical_form_ignores_case_and_skips() {
        let a = parse(
            &tags(&[
                "traefik.S.LoadBalancer.server.port=80",
                "traefik.s.loadbalancer.passhostheader=false",
            ]),
            "traefik",
        );
        let b = parse(
            &tags(&[
                "traefik.s.loadbalancer.server.port=81",
                "traefik.s.LOADBALANCER.passHostHeader=false",
            ]),
            "traefik",
        );
        let s = |l: &Labels| {
            l.root
                .child("s")
                .map(|n| n.canonical(&["loadbalancer.server"]))
                .unwrap_or_default()
        };
        assert_eq!(s(&a), s(&b));
        assert_eq!(s(&a).len(), 1);
    }

    #[test]
    fn fields_report_what_was_not_read() {
        let labels = parse(&tags(&["traefik.r.rule=x", "traefik.r.rulle=y"]), "traefik");
        let r = labels.root.child("r").expect("r");
        let mut fields = Fields::new(r);
        assert_eq!(fields.value("RULE").map(|l| l.value.as_str()), Some("x"));
        let unknown: Vec<&str> = fields.unknown().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(unknown, ["rulle"]);
    }
}
