-- wrk script: POST a small OpenAI Responses request (not streamed, store false) with the client
-- token as Bearer. The path comes from the URL given to wrk (…/v1/responses); the proxy translates
-- it to POST /v1beta/models/gemini-2.5-flash:generateContent and the answer back to a `response`.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.body = '{"model":"gemini-2.5-flash","input":"hi","store":false}'
