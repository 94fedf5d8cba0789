//! Consul's per-service summary followed from one answer to the next at the cost of what changed.
//!
//! `/v1/internal/ui/services` answers with one entry per service of the whole catalog (about
//! 3 MB at 10,000 services with 5 instances each), and the control plane asks for it after every
//! move of the service list. Consul writes it the same way each time: entries sorted by name,
//! each entry's tags and nodes sorted. So two answers differ only where the catalog changed.
//! [`SummaryIndex`] keeps the last answer and where each of its entries lies; a new answer is
//! compared with it byte for byte from both ends (a memory comparison), and only the entries
//! between the first and the last difference are parsed. It names the services whose entries
//! appeared, left or changed, and hands out any entry on request.
//!
//! Nothing is trusted that was not checked: the unchanged entries at the start of the answer are
//! the same bytes at the same place, and those at the end are taken over only when parsing from a
//! known entry lands exactly where one of them starts (from there on, the bytes, and so the
//! parse, are those of the last answer). Anything unexpected (the first answer, an answer that
//! cannot be read, entries out of order) reads the answer whole.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Deserialize;

use crate::catalog::{RawSummary, ServiceSummary, Summaries, Text};
use crate::scan::{expect, skip_whitespace, unexpected};

/// What the answer must start with.
const LIST: &str = "'[' (a list of service summaries)";

/// What a new answer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryChanges {
    /// The answer was read whole (the first one, or one that could not be compared): any entry
    /// may have changed.
    All,
    /// The services whose entries appeared, left or differ from the last answer.
    Services(BTreeSet<String>),
}

/// One entry of the answer: where it lies in the body, and the service it summarizes.
#[derive(Debug, Clone)]
struct Entry {
    start: usize,
    end: usize,
    name: Box<str>,
}

/// The last summary answer, indexed by service name; see the module documentation.
#[derive(Debug, Default)]
pub struct SummaryIndex {
    body: Bytes,
    entries: Vec<Entry>,
    /// Whether the entries are sorted by name (Consul sorts them): lookups then search.
    sorted: bool,
    /// How many entries the last update parsed (what it cost).
    parsed_last: usize,
}

/// The only field needed to index an entry.
#[derive(Deserialize)]
struct NameOnly<'a> {
    #[serde(rename = "Name", borrow)]
    name: Text<'a>,
}

impl SummaryIndex {
    /// An index that holds no answer yet: the first one is read whole.
    pub fn new() -> SummaryIndex {
        SummaryIndex::default()
    }

    /// Every service of the last answer, in the answer's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.name)
    }

    /// How many entries the last [`SummaryIndex::update`] parsed: all of them for a whole read,
    /// about as many as changed otherwise.
    pub fn parsed_last(&self) -> usize {
        self.parsed_last
    }

    /// Forgets the last answer, so the next one is read whole.
    pub fn clear(&mut self) {
        *self = SummaryIndex::default();
    }

    /// Takes a new answer and says which entries changed. An answer that cannot be compared
    /// with the last one is read whole; one that cannot be read at all is an error saying why,
    /// and the index is then cleared (the next answer is read whole).
    pub fn update(&mut self, answer: &Summaries) -> Result<SummaryChanges, serde_json::Error> {
        let body = answer.body.clone();
        // An answer naming services was read last (a failed read clears them): compare with it.
        if !self.entries.is_empty() {
            if let Ok(changes) = self.update_in_place(body.clone()) {
                return Ok(changes);
            }
            // Read it whole: if that fails too, the error says why.
        }
        let result = self.read_whole(body).map(|()| SummaryChanges::All);
        if result.is_err() {
            self.clear();
        }
        result
    }

    /// The summary of `service` in the last answer, if it names it.
    pub fn get(&self, service: &str) -> Option<Result<ServiceSummary<'_>, serde_json::Error>> {
        let entry = if self.sorted {
            let at = self.entries.binary_search_by(|e| (*e.name).cmp(service)).ok()?;
            &self.entries[at]
        } else {
            self.entries.iter().find(|e| &*e.name == service)?
        };
        let raw = &self.body[entry.start..entry.end];
        Some(serde_json::from_slice::<RawSummary<'_>>(raw).map(RawSummary::into_summary))
    }

    fn read_whole(&mut self, body: Bytes) -> Result<(), serde_json::Error> {
        let mut entries = Vec::new();
        let mut at = skip_whitespace(&body, 0);
        if body[at..].starts_with(b"null") {
            at = skip_whitespace(&body, at + 4);
        } else {
            at = expect(&body, at, b'[', LIST)?;
            at = skip_whitespace(&body, at);
            if body.get(at) == Some(&b']') {
                at = skip_whitespace(&body, at + 1);
            } else {
                loop {
                    let entry = parse_entry(&body, at)?;
                    at = entry.end;
                    entries.push(entry);
                    match next_entry(&body, at)? {
                        Next::Entry(next) => at = next,
                        Next::End(end) => {
                            at = end;
                            break;
                        }
                    }
                }
            }
        }
        if at != body.len() {
            return Err(unexpected(&body, at, "the end of the answer"));
        }
        self.sorted = entries.windows(2).all(|w| w[0].name < w[1].name);
        self.parsed_last = entries.len();
        self.entries = entries;
        self.body = body;
        Ok(())
    }

    fn update_in_place(&mut self, body: Bytes) -> Result<SummaryChanges, serde_json::Error> {
        let (old, old_len, new_len) = (&self.body, self.body.len(), body.len());
        let prefix = common_prefix(old, &body);
        if prefix == old_len && prefix == new_len {
            self.parsed_last = 0;
            return Ok(SummaryChanges::Services(BTreeSet::new()));
        }
        let suffix = common_suffix(old, &body).min(old_len.min(new_len) - prefix);
        // Entries ending within the common prefix are unchanged and at the same place.
        let first = self.entries.partition_point(|e| e.end <= prefix);
        // Entries starting within the common suffix may be taken over, shifted.
        let mut candidate = self
            .entries
            .partition_point(|e| e.start < old_len - suffix)
            .max(first);

        // Parse from just after the last unchanged entry (or the array's opening bracket).
        let mut parsed: Vec<Entry> = Vec::new();
        let stop = match first.checked_sub(1) {
            Some(last) => match next_entry(&body, self.entries[last].end)? {
                Next::End(end) => Stop::End(end),
                Next::Entry(at) => self.parse_from(&body, at, &mut candidate, &mut parsed)?,
            },
            None => {
                let at = skip_whitespace(&body, expect(&body, skip_whitespace(&body, 0), b'[', LIST)?);
                if body.get(at) == Some(&b']') {
                    Stop::End(skip_whitespace(&body, at + 1))
                } else {
                    self.parse_from(&body, at, &mut candidate, &mut parsed)?
                }
            }
        };
        let taken_over = match stop {
            Stop::TakeOver(k) => k,
            Stop::End(end) if end == new_len => self.entries.len(),
            Stop::End(end) => return Err(unexpected(&body, end, "the end of the answer")),
        };

        // What changed: the old entries replaced and the new ones parsed, except an entry parsed
        // again with the same name and bytes (only its neighbours changed).
        let replaced: BTreeMap<&str, &[u8]> = self.entries[first..taken_over]
            .iter()
            .map(|e| (&*e.name, &old[e.start..e.end]))
            .collect();
        let mut changed: BTreeSet<String> = replaced.keys().map(|n| n.to_string()).collect();
        for entry in &parsed {
            if replaced.get(&*entry.name) == Some(&&body[entry.start..entry.end]) {
                changed.remove(&*entry.name);
            } else {
                changed.insert(entry.name.to_string());
            }
        }

        // The new index: the unchanged head, the parsed middle, the tail shifted where it is
        // (its names are not copied).
        let sorted =
            self.sorted && sorted_junctions(&self.entries[..first], &parsed, &self.entries[taken_over..]);
        for e in &mut self.entries[taken_over..] {
            e.start = e.start + new_len - old_len;
            e.end = e.end + new_len - old_len;
        }
        self.parsed_last = parsed.len();
        self.entries.splice(first..taken_over, parsed);
        self.sorted = sorted;
        self.body = body;
        Ok(SummaryChanges::Services(changed))
    }

    /// Parses entries from `at` (the start of one) until the array ends or parsing reaches the
    /// start of an entry of the common suffix, which is then taken over with what follows.
    fn parse_from(
        &self,
        body: &[u8],
        mut at: usize,
        candidate: &mut usize,
        parsed: &mut Vec<Entry>,
    ) -> Result<Stop, serde_json::Error> {
        // Where an old entry would start in the new answer.
        let shift = |start: usize| (start + body.len()).checked_sub(self.body.len());
        loop {
            while let Some(e) = self.entries.get(*candidate) {
                match shift(e.start) {
                    Some(start) if start < at => *candidate += 1,
                    Some(start) if start == at => return Ok(Stop::TakeOver(*candidate)),
                    _ => break,
                }
            }
            let entry = parse_entry(body, at)?;
            at = entry.end;
            parsed.push(entry);
            match next_entry(body, at)? {
                Next::Entry(next) => at = next,
                Next::End(end) => return Ok(Stop::End(end)),
            }
        }
    }
}

/// Where parsing stopped.
enum Stop {
    /// At the start of this old entry (shifted): it and all after it are taken over.
    TakeOver(usize),
    /// After the array's closing bracket and the whitespace that follows.
    End(usize),
}

/// What follows an entry.
enum Next {
    /// Another entry, starting here.
    Entry(usize),
    /// The array's end: the position after its closing bracket and any whitespace.
    End(usize),
}

/// Parses the entry starting at `at`: its extent and its service's name.
fn parse_entry(body: &[u8], at: usize) -> Result<Entry, serde_json::Error> {
    let mut stream = serde_json::Deserializer::from_slice(&body[at..]).into_iter::<NameOnly<'_>>();
    let name = match stream.next() {
        Some(entry) => entry?.name.0.into_owned().into_boxed_str(),
        None => return Err(unexpected(body, at, "a service's summary")),
    };
    Ok(Entry {
        start: at,
        end: at + stream.byte_offset(),
        name,
    })
}

/// After an entry ending at `at`: a comma and the next entry, or the closing bracket.
fn next_entry(body: &[u8], at: usize) -> Result<Next, serde_json::Error> {
    let at = skip_whitespace(body, at);
    match body.get(at) {
        Some(b',') => Ok(Next::Entry(skip_whitespace(body, at + 1))),
        Some(b']') => Ok(Next::End(skip_whitespace(body, at + 1))),
        _ => Err(unexpected(body, at, "',' or ']' after a service's summary")),
    }
}

/// Whether the three runs of entries, each sorted, are sorted together.
fn sorted_junctions(head: &[Entry], middle: &[Entry], tail: &[Entry]) -> bool {
    let names = head
        .last()
        .into_iter()
        .chain(middle)
        .chain(tail.first())
        .map(|e| &e.name);
    let names: Vec<&Box<str>> = names.collect();
    names.windows(2).all(|w| w[0] < w[1])
}

/// Blocks compared at once, coarse then fine: one large comparison runs at memory speed, and only
/// the large block holding the first difference is compared again in small ones.
const BLOCKS: [usize; 2] = [64 * 1024, 256];

/// Length of the longest common prefix, compared a block at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut at = 0;
    for block in BLOCKS {
        while at + block <= len && a[at..at + block] == b[at..at + block] {
            at += block;
        }
    }
    while at < len && a[at] == b[at] {
        at += 1;
    }
    at
}

/// Length of the longest common suffix, compared a block at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let (ea, eb) = (a.len(), b.len());
    let mut n = 0;
    for block in BLOCKS {
        while n + block <= len && a[ea - n - block..ea - n] == b[eb - n - block..eb - n] {
            n += block;
        }
    }
    while n < len && a[ea - n - 1] == b[eb - n - 1] {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary answer as Consul 1.8 writes it (indented, as a dev agent does), for `services`
    /// given as (name, nodes).
    fn answer(services: &[(&str, &[&str])]) -> Summaries {
        let entries: Vec<serde_json::Value> = services
            .iter()
            .map(|(name, nodes)| {
                serde_json::json!({
                    "Name": name,
                    "Tags": ["a", "b"],
                    "Nodes": nodes,
                    "InstanceCount": nodes.len(),
                    "ChecksPassing": 0,
                    "ExternalSources": null,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&entries).expect("serializable");
        Summaries::from_json(text)
    }

    fn names(list: &[&str]) -> SummaryChanges {
        SummaryChanges::Services(list.iter().map(|s| s.to_string()).collect())
    }

    fn nodes_of(index: &SummaryIndex, service: &str) -> Option<Vec<String>> {
        index.get(service).map(|s| {
            let s = s.expect("readable entry");
            assert_eq!(s.instance_count, s.nodes.len());
            s.nodes.iter().map(|n| n.to_string()).collect()
        })
    }

    /// What the index must hold after any update: exactly what reading the answer whole gives.
    fn assert_same_as_whole(index: &SummaryIndex, answer: &Summaries) {
        let whole = answer.entries().expect("valid answer");
        let ours: Vec<&str> = index.names().collect();
        let theirs: Vec<&str> = whole.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(ours, theirs);
        for summary in &whole {
            let got = index.get(&summary.name).expect("named").expect("readable");
            assert_eq!(&got, summary);
        }
    }

    #[test]
    fn common_ends_are_found_wherever_the_first_difference_is() {
        let naive_prefix = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let naive_suffix = |a: &[u8], b: &[u8]| {
            a.iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count()
        };
        let base: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for at in [
            0, 1, 255, 256, 257, 65_535, 65_536, 65_537, 131_072, 150_001, 199_999,
        ] {
            let mut other = base.clone();
            other[at] ^= 0xff;
            assert_eq!(common_prefix(&base, &other), at);
            assert_eq!(common_suffix(&base, &other), base.len() - at - 1);
            // Different lengths: one is the other with bytes inserted at `at`.
            let mut longer = base[..at].to_vec();
            longer.extend_from_slice(b"inserted");
            longer.extend_from_slice(&base[at..]);
            assert_eq!(common_prefix(&base, &longer), naive_prefix(&base, &longer));
            assert_eq!(common_suffix(&base, &longer), naive_suffix(&base, &longer));
        }
        assert_eq!(common_prefix(&base, &base), base.len());
        assert_eq!(
            common_suffix(&base[..1000], &base),
            naive_suffix(&base[..1000], &base)
        );
    }

    #[test]
    fn the_first_answer_is_read_whole_and_an_identical_one_changes_nothing() {
        let mut index = SummaryIndex::new();
        let first = answer(&[("api", &["n1"]), ("web", &["n1", "n2"])]);
        assert_eq!(index.update(&first).expect("valid"), SummaryChanges::All);
        assert_same_as_whole(&index, &first);
        let again = answer(&[("api", &["n1"]), ("web", &["n1", "n2"])]);
        assert_eq!(index.update(&again).expect("valid"), names(&[]));
        assert_eq!(nodes_of(&index, "web"), Some(vec!["n1".into(), "n2".into()]));
        assert_eq!(nodes_of(&index, "nope"), None);
    }

    #[test]
    fn names_what_appeared_left_or_changed_wherever_it_is() {
        let base: Vec<(String, Vec<&str>)> = (0..40)
            .map(|i| (format!("svc-{i:02}"), vec!["n1", "n2"]))
            .collect();
        let render = |list: &[(String, Vec<&str>)]| {
            let pairs: Vec<(&str, &[&str])> = list.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
            answer(&pairs)
        };
        // Each case: a change to the list, and the names it must report.
        type Change = fn(&mut Vec<(String, Vec<&'static str>)>);
        // Each case: a change to the list, the names it must report, and at most how many entries
        // may be parsed (those between the first and the last difference, and a neighbour on each
        // side): never the 40 entries for a change in one place.
        let cases: Vec<(Change, &[&str], usize)> = vec![
            (|l| l[0].1.push("n3"), &["svc-00"], 2),
            (|l| l[39].1.push("n3"), &["svc-39"], 2),
            (|l| l[17].1 = vec!["n9"], &["svc-17"], 3),
            (|l| _ = l[5].1.pop(), &["svc-05"], 3),
            (|l| l.insert(0, ("aaa".into(), vec!["n1"])), &["aaa"], 2),
            (|l| l.push(("zzz".into(), vec!["n1"])), &["zzz"], 2),
            (|l| l.insert(20, ("svc-19b".into(), vec!["n1"])), &["svc-19b"], 3),
            (|l| drop(l.remove(0)), &["svc-00"], 2),
            (|l| drop(l.remove(39)), &["svc-39"], 2),
            (|l| drop(l.remove(20)), &["svc-20"], 3),
            (
                |l| {
                    l[3].1.push("n3");
                    l[30].1.push("n3");
                },
                &["svc-03", "svc-30"],
                30,
            ),
            (|l| l.truncate(1), &[], 1),
            (|l| l.clear(), &[], 1),
        ];
        for (i, (change, expected, at_most)) in cases.into_iter().enumerate() {
            let mut index = SummaryIndex::new();
            let before = render(&base);
            index.update(&before).expect("valid");
            let mut list = base.clone();
            change(&mut list);
            let after = render(&list);
            let changes = index.update(&after).expect("valid");
            assert_same_as_whole(&index, &after);
            assert!(
                index.parsed_last() <= at_most,
                "case {i}: parsed {} entries",
                index.parsed_last()
            );
            let expected: BTreeSet<String> = if i >= 11 {
                // Truncations: every removed service.
                base.iter()
                    .map(|(n, _)| n.clone())
                    .filter(|n| !list.iter().any(|(m, _)| m == n))
                    .collect()
            } else {
                expected.iter().map(|s| s.to_string()).collect()
            };
            assert_eq!(changes, SummaryChanges::Services(expected), "case {i}");
            // And back again.
            index.update(&before).expect("valid");
            assert_same_as_whole(&index, &before);
        }
    }

    #[test]
    fn follows_a_long_series_of_changes_like_a_whole_read() {
        // A deterministic walk of random-looking changes, each checked against a whole read.
        let mut list: Vec<(String, Vec<&str>)> = (0..30).map(|i| (format!("s{i:03}"), vec!["n1"])).collect();
        let mut index = SummaryIndex::new();
        let mut seed = 7u64;
        for step in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (seed >> 33) as usize;
            match pick % 4 {
                0 if !list.is_empty() => {
                    let at = pick % list.len();
                    list[at].1.push("n2");
                }
                1 if !list.is_empty() => {
                    list.remove(pick % list.len());
                }
                2 => {
                    let name = format!("s{:03}", pick % 997);
                    if let Err(at) = list.binary_search_by(|(n, _)| n.cmp(&name)) {
                        list.insert(at, (name, vec!["n3"]));
                    }
                }
                _ => {}
            }
            let pairs: Vec<(&str, &[&str])> = list.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
            let next = answer(&pairs);
            let changes = index.update(&next).unwrap_or_else(|e| panic!("step {step}: {e}"));
            if step > 0 && !list.is_empty() {
                assert_ne!(
                    changes,
                    SummaryChanges::All,
                    "step {step}: compared, not read whole"
                );
            }
            assert_same_as_whole(&index, &next);
        }
    }

    #[test]
    fn a_name_that_looks_like_a_boundary_is_still_read_right() {
        // Names holding the bytes that separate entries must not confuse the comparison.
        let mut index = SummaryIndex::new();
        let tricky = "x\"},{\"Name\":\"y";
        index
            .update(&answer(&[("a", &["n1"]), (tricky, &["n1"]), ("z", &["n1"])]))
            .expect("valid");
        let next = answer(&[("a", &["n1"]), (tricky, &["n1", "n2"]), ("z", &["n1"])]);
        assert_eq!(index.update(&next).expect("valid"), names(&[tricky]));
        assert_same_as_whole(&index, &next);
    }

    #[test]
    fn compact_answers_and_null_are_read_too() {
        let mut index = SummaryIndex::new();
        let compact = Summaries::from_json(
            r#"[{"Name":"a","InstanceCount":1,"Nodes":["n1"]},{"Name":"b","Nodes":null}]"#,
        );
        assert_eq!(index.update(&compact).expect("valid"), SummaryChanges::All);
        let next = Summaries::from_json(
            r#"[{"Name":"a","InstanceCount":1,"Nodes":["n1"]},{"Name":"b","InstanceCount":1,"Nodes":["n2"]}]"#,
        );
        assert_eq!(index.update(&next).expect("valid"), names(&["b"]));
        assert_same_as_whole(&index, &next);
        let mut index = SummaryIndex::new();
        index
            .update(&Summaries::from_json("null"))
            .expect("null is no service");
        assert_eq!(index.names().count(), 0);
    }

    #[test]
    fn an_answer_that_cannot_be_read_is_an_error_and_the_next_is_read_whole() {
        let mut index = SummaryIndex::new();
        index
            .update(&answer(&[("a", &["n1"]), ("b", &["n1"])]))
            .expect("valid");
        let broken = Summaries::from_json(r#"[{"Name":"a","InstanceCount":1},{"Nodes":[]}]"#);
        let err = index.update(&broken).expect_err("an entry without a name");
        assert!(err.to_string().contains("Name"), "{err}");
        let truncated = Summaries::from_json(r#"[{"Name":"a"}"#);
        let err = index.update(&truncated).expect_err("truncated");
        assert!(err.to_string().contains("expected ',' or ']'"), "{err}");
        let next = answer(&[("a", &["n1"])]);
        assert_eq!(index.update(&next).expect("valid"), SummaryChanges::All);
        assert_same_as_whole(&index, &next);
    }

    #[test]
    fn entries_out_of_order_are_still_found() {
        let mut index = SummaryIndex::new();
        index
            .update(&answer(&[("b", &["n1"]), ("a", &[])]))
            .expect("valid");
        assert_eq!(nodes_of(&index, "b"), Some(vec!["n1".into()]));
        assert_eq!(nodes_of(&index, "a"), Some(vec![]));
        let next = answer(&[("b", &["n1"]), ("a", &["n2"])]);
        assert_eq!(index.update(&next).expect("valid"), names(&["a"]));
        assert_eq!(nodes_of(&index, "a"), Some(vec!["n2".into()]));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// A catalog: service name → nodes. Names use the characters JSON escapes or that
        /// separate entries, so no byte pattern can be mistaken for a boundary.
        fn catalog() -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
            prop::collection::btree_map(
                "[a-c\"\\{},:\\[\\] é\n]{1,6}",
                prop::collection::vec("n[1-3]", 0..3),
                0..12,
            )
        }

        fn render(catalog: &BTreeMap<String, Vec<String>>, pretty: bool) -> Summaries {
            let entries: Vec<serde_json::Value> = catalog
                .iter()
                .map(|(name, nodes)| {
                    let mut nodes = nodes.clone();
                    nodes.sort();
                    serde_json::json!({"Name": name, "Nodes": nodes, "InstanceCount": nodes.len()})
                })
                .collect();
            let text = if pretty {
                serde_json::to_string_pretty(&entries)
            } else {
                serde_json::to_string(&entries)
            };
            Summaries::from_json(text.expect("serializable"))
        }

        proptest! {
            /// Whatever two answers are, the second taken after the first gives exactly what
            /// reading it whole gives, and names exactly the services that appeared, left or
            /// changed.
            #[test]
            fn an_update_equals_a_whole_read(
                before in catalog(),
                after in catalog(),
                keep in prop::collection::vec(any::<bool>(), 12),
                pretty in any::<bool>(),
            ) {
                // Keep some services of `before` as they were, so the answers share runs.
                let mut next = after.clone();
                for ((name, nodes), keep) in before.iter().zip(keep) {
                    if keep {
                        next.insert(name.clone(), nodes.clone());
                    }
                }
                let mut index = SummaryIndex::new();
                index.update(&render(&before, pretty)).expect("valid");
                let answer = render(&next, pretty);
                let changes = index.update(&answer).expect("valid");
                assert_same_as_whole(&index, &answer);
                let sorted = |nodes: &Vec<String>| {
                    let mut nodes = nodes.clone();
                    nodes.sort();
                    nodes
                };
                let expected: BTreeSet<String> = before
                    .keys()
                    .chain(next.keys())
                    .filter(|name| before.get(*name).map(sorted) != next.get(*name).map(sorted))
                    .cloned()
                    .collect();
                if before.is_empty() {
                    prop_assert_eq!(changes, SummaryChanges::All);
                } else {
                    prop_assert_eq!(changes, SummaryChanges::Services(expected));
                }
            }
        }
    }
}
