-- wrk script: POST a small generateContent request with the client token.
-- The path comes from the URL given to wrk (…/v1beta/models/gemini-2.5-flash:generateContent).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = "bench-token"
wrk.body = '{"contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."}]}],'
    .. '"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}'
