//! Presigned part URLs are cached in pages of [`URL_PAGE_SIZE`] (one cache entry per
//! page, so a 10,000-part upload is 10 entries): which page holds a part, and where.
use std::collections::BTreeMap;

/// Parts per cached URL page.
pub const URL_PAGE_SIZE: u32 = 1000;

/// Part numbers grouped by the URL page that holds them.
pub fn by_url_page(numbers: &[u32]) -> BTreeMap<u32, Vec<u32>> {
    let mut pages: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &n in numbers {
        pages.entry((n - 1) / URL_PAGE_SIZE).or_default().push(n);
    }
    pages
}

/// Part `n`'s slot in its URL page.
pub fn page_slot(n: u32) -> usize {
    ((n - 1) % URL_PAGE_SIZE) as usize
}

/// Puts `signed` (one per number in `numbers`, all on `page`) into the page's slots,
/// sized for the parts that page holds.
pub fn fill_page<T: Clone>(
    slots: &mut Vec<Option<T>>,
    total_parts: u32,
    page: u32,
    numbers: &[u32],
    signed: Vec<T>,
) {
    let page_len = (total_parts - page * URL_PAGE_SIZE).min(URL_PAGE_SIZE) as usize;
    slots.resize(page_len, None);
    for (&n, url) in numbers.iter().zip(signed) {
        slots[page_slot(n)] = Some(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_slots() {
        let pages = by_url_page(&[1, 1000, 1001, 2500]);
        assert_eq!(
            pages.into_iter().collect::<Vec<_>>(),
            vec![(0, vec![1, 1000]), (1, vec![1001]), (2, vec![2500])]
        );
        assert_eq!(
            (page_slot(1), page_slot(1000), page_slot(1001)),
            (0, 999, 0)
        );
        let mut slots: Vec<Option<u32>> = Vec::new();
        fill_page(&mut slots, 2500, 2, &[2001, 2500], vec![1, 500]);
        assert_eq!(slots.len(), 500);
        assert_eq!((slots[0], slots[499], slots[1]), (Some(1), Some(500), None));
    }
}
