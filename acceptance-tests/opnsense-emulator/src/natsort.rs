//! Natural, case-insensitive ordering as PHP's `SORT_NATURAL | SORT_FLAG_CASE` does it.
//!
//! OPNsense sorts search rows and relation option maps this way, and clients that page or diff lists see the
//! order, so `web2 < web9 < web_form < web_int` must hold here too. PHP folds case with `toupper`, which puts `_`
//! after letters; digit runs compare by numeric value.

use std::cmp::Ordering;

pub fn natcasecmp(a: &str, b: &str) -> Ordering {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_uppercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_uppercase()).collect();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ca, cb) = (a[i], b[j]);
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na: String = a[si..i].iter().collect::<String>();
            let nb: String = b[sj..j].iter().collect::<String>();
            let na = na.trim_start_matches('0');
            let nb = nb.trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
            continue;
        }
        match ca.cmp(&cb) {
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
            o => return o,
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_matches_recording() {
        let mut v = vec!["web_int", "web2", "web_form", "web9", "Web1", "web10"];
        v.sort_by(|a, b| natcasecmp(a, b));
        assert_eq!(
            v,
            vec!["Web1", "web2", "web9", "web10", "web_form", "web_int"]
        );
    }
}
