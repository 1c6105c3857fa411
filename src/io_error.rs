//! io errors in fwscript's message style, for every stage that reads or
//! writes files: "No such file or directory (os error 2)" reads as "no
//! such file or directory".

pub fn lowercase(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_read_lowercase_without_the_code() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::lowercase(&err), "no such file or directory");
    }
}
