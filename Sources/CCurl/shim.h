#include <curl/curl.h>

// Swift cannot call C variadic functions, so curl_easy_setopt and curl_easy_getinfo are reached through these
// typed, header-only wrappers. Each passes its argument with exactly the type libcurl reads for that option kind.

typedef size_t (*kiln_curl_write_callback)(char *data, size_t size, size_t count, void *userdata);

static inline CURLcode kiln_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode kiln_curl_setopt_pointer(CURL *handle, CURLoption option, const void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode kiln_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode kiln_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode kiln_curl_setopt_write_function(CURL *handle, kiln_curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
}

static inline CURLcode kiln_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
