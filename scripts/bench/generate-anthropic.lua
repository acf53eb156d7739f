-- wrk script: POST a small Anthropic Messages request (not streamed) with the client token as
-- x-api-key. The path comes from the URL given to wrk (…/v1/messages); the proxy translates it to
-- POST /v1beta/models/gemini-2.5-flash:generateContent and the answer back to a `message`.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "bench-token"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.body = '{"model":"gemini-2.5-flash","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}'
