-- wrk script: generateContent naming a cache made through the proxy (a table hit: the request is
-- served by a key of the cache's project).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = "bench-token"
wrk.body = '{"cachedContent":"cachedContents/benchcache",'
    .. '"contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."}]}],'
    .. '"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}'
