-- wrk script: generateContent naming a file the proxy has never seen (the body is searched for
-- resources and the table looked up: a miss, so any project serves it).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = "bench-token"
wrk.body = '{"contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."},'
    .. '{"fileData":{"mimeType":"text/plain","fileUri":"https://generativelanguage.googleapis.com/v1beta/files/benchunknown"}}]}],'
    .. '"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}'
