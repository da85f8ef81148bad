-- wrk script: POST a NOTIFY_PUBLIC_USER Invite with a different ID on every request, an
-- EventTs of now and a session three days ahead, so that each request is a new event that
-- herald commits with two deliveries (e-mail and SMS).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

local template = [[{"WebhookType":"NOTIFY_PUBLIC_USER","ID":%d,"Status":"Invite","EventTs":"%s","Attributes":[
{"AttributeName":"RecipientName","AttributeValue":"Perry Public"},
{"AttributeName":"RecipientEmailAddress","AttributeValue":"perry%d@example.com"},
{"AttributeName":"RecipientSmsNumber","AttributeValue":"4155552671"},
{"AttributeName":"RecipientTimeZone","AttributeValue":"Pacific Standard Time"},
{"AttributeName":"SessionHostUserId","AttributeValue":"24403"},
{"AttributeName":"SessionHostName","AttributeValue":"Dr. Ada Example"},
{"AttributeName":"SessionTimeUtc","AttributeValue":"%s"},
{"AttributeName":"SessionTimeLocal","AttributeValue":"%s"}]}]]

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  counter = counter + 1
  -- Unique within a run; across runs EventTs differs, which makes the event key differ.
  local id = (offset or 0) + counter * 16
  local now = os.time()
  local event_ts = os.date("!%Y-%m-%dT%H:%M:%S", now)
  local session = os.date("!%Y-%m-%dT%H:%M:%S", now + 3 * 86400)
  -- The local time uses the process's zone: run wrk with TZ=America/Los_Angeles so that it
  -- agrees with RecipientTimeZone, as the platform's payloads do.
  local session_local = os.date("%Y-%m-%dT%H:%M:%S", now + 3 * 86400)
  local body = string.format(template, id, event_ts, id, session, session_local)
  return wrk.format(nil, nil, nil, body)
end
