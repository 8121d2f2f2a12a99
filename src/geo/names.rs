//! Name keys for commune matching.
//!
//! Rule kept: two spellings match when their keys are equal. The key is
//! [`fold_name`](crate::domain::fold_name) (accents, case and separators ignored) with the
//! abbreviations used in postal addresses expanded word by word (`st` → `saint`,
//! `ste` → `sainte`), so `ST NAZAIRE`, `saint nazaire` and `Saint-Nazaire` are one key.

use crate::domain::fold_name;

/// The matching key of a commune name or of a query.
pub fn name_key(s: &str) -> String {
    let folded = fold_name(s);
    let mut out = String::with_capacity(folded.len() + 8);
    for w in folded.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(match w {
            "st" => "saint",
            "ste" => "sainte",
            w => w,
        });
    }
    out
}

/// The key of a city as written in a postal address: like [`name_key`], with a trailing
/// `CEDEX` (and anything after it, e.g. `CEDEX 2`) removed.
pub fn city_key(s: &str) -> String {
    let k = name_key(s);
    match k.find("cedex") {
        Some(0) => String::new(),
        Some(i) if k.as_bytes()[i - 1] == b' ' => k[..i - 1].to_string(),
        _ => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_accents_case_separators_and_saint_abbreviations() {
        assert_eq!(name_key("Saint-Nazaire"), "saint nazaire");
        assert_eq!(name_key("ST NAZAIRE"), "saint nazaire");
        assert_eq!(
            name_key("Ste-Luce-sur-Loire"),
            name_key("Sainte-Luce-sur-Loire")
        );
        assert_eq!(name_key("L'Île-d'Yeu"), "l ile d yeu");
        assert_eq!(name_key("Stade"), "stade");
    }

    #[test]
    fn city_key_drops_cedex() {
        assert_eq!(city_key("NANTES CEDEX 1"), "nantes");
        assert_eq!(city_key("Angers Cedex"), "angers");
        assert_eq!(city_key("Cedex"), "");
    }
}
