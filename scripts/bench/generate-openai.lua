-- wrk script: POST a small OpenAI chat completion (not streamed) with the client token as a bearer.
-- The path comes from the URL given to wrk (…/v1/chat/completions); the proxy translates it to
-- POST /v1beta/models/gemini-2.5-flash:generateContent and the answer back to OpenAI's shape.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.body = '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}'
