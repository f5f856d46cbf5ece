//! Which language a page speaks: the user's saved one, else the browser's (`Accept-Language`),
//! else the organisation's default, else English; among those the pages are written in.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT_LANGUAGE;
use enroll_core::model::Locale;

use super::texts::Language;

pub fn choose(user: Option<&Locale>, headers: &HeaderMap, org: Option<&Locale>) -> Language {
    user.and_then(|locale| Language::of(locale.language()))
        .or_else(|| from_header(headers))
        .or_else(|| org.and_then(|locale| Language::of(locale.language())))
        .unwrap_or(Language::En)
}

/// The best-weighted language of `Accept-Language` that the pages have.
pub fn from_header(headers: &HeaderMap) -> Option<Language> {
    let header = headers.get(ACCEPT_LANGUAGE)?.to_str().ok()?;
    let mut ranges: Vec<(f32, &str)> = header
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let range = parts.next()?.trim();
            let weight = parts
                .find_map(|parameter| parameter.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (weight > 0.0 && !range.is_empty()).then_some((weight, range))
        })
        .collect();
    // Stable: equal weights keep the header's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.into_iter().find_map(|(_, range)| {
        let primary = range.split('-').next().unwrap_or(range);
        Language::of(&primary.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_LANGUAGE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_users_language_comes_first_then_the_browsers_then_the_orgs() {
        let de = Locale::parse("de-CH").unwrap();
        let fr = Locale::parse("fr").unwrap();
        assert_eq!(choose(Some(&de), &header("fr"), Some(&fr)), Language::De);
        assert_eq!(
            choose(None, &header("fr-FR,fr;q=0.9,en;q=0.8"), None),
            Language::Fr
        );
        assert_eq!(
            choose(None, &header("it, de;q=0.5, fr;q=0.7"), None),
            Language::Fr
        );
        assert_eq!(choose(None, &header("it"), Some(&de)), Language::De);
        assert_eq!(choose(None, &HeaderMap::new(), None), Language::En);
        assert_eq!(choose(None, &header("de;q=0, *"), None), Language::En);
    }
}
