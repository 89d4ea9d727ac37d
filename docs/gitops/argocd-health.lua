-- Argo CD health check for wasmplug.dev/FormatPlugin, read from the object's
-- kstatus conditions. Install it under the argocd-cm key
-- resource.customizations.health.wasmplug.dev_FormatPlugin (see
-- docs/operations.md). Tested against real objects in e2e/tests/gitops.rs.
local hs = { status = "Progressing", message = "waiting for the operator to report" }

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "reconciling is suspended (spec.suspend); the last published version keeps serving"
  return hs
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready, stalled, reconciling
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  elseif condition.type == "Reconciling" then
    reconciling = condition
  end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (ready ~= nil and ready.message) or stalled.message
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = (ready ~= nil and ready.message) or reconciling.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message
end
return hs
