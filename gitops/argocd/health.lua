-- Argo CD health check for red.dev/Federation (resource.customizations.health.red.dev_Federation).
-- The operator's conditions are the truth (kstatus-compatible: Ready, Reconciling, Stalled); phase is
-- only a fallback. A running federation is Progressing, like a running batch/v1 Job in Argo CD: it is
-- working as intended but its outcome is not in yet. Healthy means finished successfully.
local hs = { status = "Progressing", message = "Waiting for the red-operator to report status" }
if obj.status == nil then
  return hs
end
local st = obj.status

-- An old status describes an old spec: wait until the operator has seen the current generation.
if obj.metadata ~= nil and obj.metadata.generation ~= nil and st.observedGeneration ~= nil
    and st.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the red-operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local conds = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type ~= nil then
      conds[c.type] = c
    end
  end
end

local function isTrue(t)
  return conds[t] ~= nil and conds[t].status == "True"
end

local function describe(t, fallback)
  local c = conds[t]
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return fallback
end

local progress = ""
if st.progress ~= nil then
  progress = "round " .. tostring(st.progress)
end

if isTrue("Suspended") then
  hs.status = "Suspended"
  hs.message = describe("Suspended", "spec.suspend is true")
  return hs
end
if isTrue("Failed") then
  hs.status = "Degraded"
  hs.message = describe("Failed", "the federation failed")
  return hs
end
if isTrue("Stalled") then
  hs.status = "Degraded"
  hs.message = describe("Stalled", "the federation makes no progress")
  return hs
end
if isTrue("Succeeded") then
  hs.status = "Healthy"
  hs.message = describe("Succeeded", "finished")
  return hs
end
if isTrue("Reconciling") then
  hs.status = "Progressing"
  hs.message = describe("ClusterReady", describe("Reconciling", "reconciling"))
  return hs
end
if st.phase == "Running" then
  hs.status = "Progressing"
  hs.message = "Running " .. progress
  if isTrue("Degraded") then
    -- Dead nodes above minClients: the federation carries on by design, so this is not Degraded.
    hs.message = hs.message .. " (" .. describe("Degraded", "some nodes are dead") .. ")"
  end
  return hs
end
if isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = describe("Ready", "ready")
  return hs
end

-- No kstatus conditions yet (or an older operator): fall back to the phase.
if st.phase == "Succeeded" then
  hs.status = "Healthy"
elseif st.phase == "Failed" then
  hs.status = "Degraded"
elseif st.phase == "Suspended" then
  hs.status = "Suspended"
end
if st.phase ~= nil then
  hs.message = "phase " .. st.phase
end
return hs
