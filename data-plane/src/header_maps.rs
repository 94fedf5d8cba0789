//! Header maps kept for reuse by the worker thread that used them.
//!
//! For: the two header maps of each request on Berth's own HTTP/1.1 path (the request's, built by
//! `http1::request`, and the backend response's, built by `proxy::backend_h1`). A new map costs
//! two allocations and two frees per request; a map given back once its fields have been sent is
//! cleared, keeping its room, and handed out again. The free list is the thread's
//! (`thread_local!`: each worker runs a runtime of its own), so no lock. At most [`KEPT`] maps are
//! kept per thread, none with room for more than [`MAX_CAPACITY`] fields, so one request with many
//! fields leaves no large map behind.
//! Not for: the maps hyper's server and client build (they are hyper's to drop).

use std::cell::RefCell;

use http::HeaderMap;

/// The most maps a thread keeps.
const KEPT: usize = 64;
/// The largest room (in fields) a kept map may have.
const MAX_CAPACITY: usize = 128;

thread_local! {
    static FREE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `fields` fields.
pub(crate) fn take(fields: usize) -> HeaderMap {
    let mut map = FREE
        .try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    map.reserve(fields);
    map
}

/// Gives `map` back for a later [`take`] on this thread (its fields are dropped now).
pub(crate) fn give(mut map: HeaderMap) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > MAX_CAPACITY {
        return;
    }
    map.clear();
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT {
            free.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn kept() -> usize {
        FREE.with_borrow(Vec::len)
    }

    #[test]
    fn a_map_given_back_comes_out_empty_with_its_room() {
        let mut map = take(8);
        map.insert("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        let room = map.capacity();
        let before = kept();
        give(map);
        assert_eq!(kept(), before + 1);
        let again = take(4);
        assert_eq!(kept(), before);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn large_and_surplus_maps_are_dropped() {
        let before = kept();
        give(take(MAX_CAPACITY * 2));
        give(HeaderMap::new());
        assert_eq!(kept(), before, "a large map or one without room is not kept");
        let maps: Vec<HeaderMap> = (0..KEPT + 5).map(|_| take(4)).collect();
        for map in maps {
            give(map);
        }
        assert_eq!(kept(), KEPT);
    }
}
