// Card preview: runs a request through the service (POST /preview/run) and shows the cards
// as an EHR would. Every text from a request or a card is set with textContent; the only HTML
// inserted is each card's detail, which the service renders from Markdown after escaping it.
"use strict";

(function () {
  const ORDER_HOOKS = ["order-sign", "order-select"];
  const state = { request: null, scenario: "", created: [], counter: 0 };
  const $ = (id) => document.getElementById(id);
  let urls = { run: "/preview/run", scenarios: "/preview/scenarios/" };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function newUuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function isWebUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url);
  }

  function isLocalPath(url) {
    return typeof url === "string" && /^\/(?!\/)/.test(url);
  }

  function setStatus(text, failed) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("failed", Boolean(failed));
  }

  function clone(value) {
    return JSON.parse(JSON.stringify(value));
  }

  function reference(resource) {
    return `${resource.resourceType}/${resource.id}`;
  }

  function resourceName(resource) {
    const concept = resource.medicationCodeableConcept || resource.code || {};
    const coding = Array.isArray(concept.coding) ? concept.coding[0] || {} : {};
    return concept.text || coding.display || coding.code || resource.resourceType;
  }

  function draftEntries(request) {
    const drafts = request && request.context && request.context.draftOrders;
    return drafts && Array.isArray(drafts.entry) ? drafts.entry : [];
  }

  function showRequest(request) {
    state.request = request;
    $("request-text").value = JSON.stringify(request, null, 2);
    renderDrafts(request);
  }

  function renderDrafts(request) {
    const list = $("drafts");
    list.replaceChildren();
    const entries = draftEntries(request).filter((e) => e && e.resource);
    if (!entries.length) list.append(element("li", "hint", "none"));
    for (const entry of entries) {
      const resource = entry.resource;
      const item = element("li", "draft");
      item.dataset.reference = reference(resource);
      item.append(element("span", "name", resourceName(resource)));
      item.append(" ");
      item.append(element("span", "id", `${reference(resource)} · ${resource.status || "no status"}`));
      list.append(item);
    }
    const created = $("created");
    created.replaceChildren();
    for (const resource of state.created) {
      const item = element("li", "draft", `${resourceName(resource)} (${resource.resourceType})`);
      created.append(item);
    }
    $("created-heading").hidden = state.created.length === 0;
  }

  function describeResource(resource) {
    if (!resource || typeof resource !== "object") return "";
    return `${resource.resourceType || "resource"}: ${resourceName(resource)}`;
  }

  function renderCard(card, detailHtml, index) {
    const indicator = ["info", "warning", "critical"].includes(card.indicator) ? card.indicator : "info";
    const box = element("article", `card indicator-${indicator}`);
    const topic = card.source && card.source.topic && card.source.topic.code;
    box.dataset.topic = topic || "";
    box.dataset.index = String(index);
    box.append(element("div", "indicator", indicator));
    box.append(element("div", "summary", card.summary));
    const detail = element("div", "detail");
    detail.innerHTML = detailHtml || ""; // rendered and escaped by the service
    box.append(detail);

    const source = card.source || {};
    const sourceLine = element("div", "source", "Source: ");
    if (isWebUrl(source.url)) {
      const link = element("a", null, source.label || source.url);
      link.href = source.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      sourceLine.append(link);
    } else {
      sourceLine.append(source.label || "—");
    }
    box.append(sourceLine);
    if (topic) box.append(element("div", "topic", `Topic: ${topic}`));

    if (Array.isArray(card.links) && card.links.length) {
      const links = element("div", "links");
      for (const one of card.links) {
        if (isWebUrl(one.url) || isLocalPath(one.url)) {
          const link = element("a", null, one.label || one.url);
          link.href = one.url;
          link.rel = "noopener noreferrer";
          link.target = "_blank";
          if (one.type) link.title = `${one.type} link`;
          links.append(link);
        } else {
          links.append(element("span", null, `${one.label || ""} (${one.url || "no url"})`));
        }
      }
      box.append(links);
    }

    for (const suggestion of card.suggestions || []) {
      const part = element("div", "suggestion");
      const actions = Array.isArray(suggestion.actions) ? suggestion.actions : [];
      part.dataset.actionTypes = actions.map((a) => a.type).join(" ");
      if (suggestion.uuid) part.dataset.uuid = suggestion.uuid;
      const label = element("strong", null, suggestion.label);
      part.append(label);
      if (suggestion.isRecommended) part.append(" ", element("em", null, "(recommended)"));
      const list = element("ul");
      for (const action of actions) {
        const text = [action.type, action.description, describeResource(action.resource), action.resourceId]
          .filter(Boolean)
          .join(" · ");
        list.append(element("li", null, text));
      }
      part.append(list);
      const take = element("button", "take", "Take this suggestion");
      take.type = "button";
      take.addEventListener("click", () => takeSuggestion(suggestion));
      part.append(take);
      box.append(part);
    }

    if (Array.isArray(card.overrideReasons) && card.overrideReasons.length) {
      const reasons = element("details", "override-reasons");
      reasons.append(element("summary", null, "Override reasons offered"));
      const list = element("ul");
      for (const reason of card.overrideReasons) {
        list.append(element("li", null, reason.display || reason.code));
      }
      reasons.append(list);
      box.append(reasons);
    }
    if (card.selectionBehavior) {
      box.append(element("div", "topic", `Selection behaviour: ${card.selectionBehavior}`));
    }
    return box;
  }

  function renderAnswer(result) {
    const cardsBox = $("cards");
    cardsBox.replaceChildren();
    $("raw").textContent = JSON.stringify(result.response, null, 2);
    if (result.status !== 200) {
      const issue = (result.response && result.response.issue && result.response.issue[0]) || {};
      setStatus(`The service answered ${result.status}: ${issue.diagnostics || "error"}`, true);
      return;
    }
    const cards = result.response.cards || [];
    cards.forEach((card, index) => cardsBox.append(renderCard(card, result.details[index], index)));
    setStatus(`${cards.length} card${cards.length === 1 ? "" : "s"}.`, false);
  }

  async function run() {
    let parsed;
    try {
      parsed = JSON.parse($("request-text").value);
    } catch (error) {
      setStatus(`The text is not valid JSON: ${error.message}`, true);
      return;
    }
    const service = $("service").value;
    const profile = $("profile").value;
    const isBundle = parsed && parsed.resourceType === "Bundle";
    const body = isBundle ? { service, profile, bundle: parsed } : { service, profile, request: parsed };
    setStatus("Running…", false);
    let answer;
    try {
      answer = await fetch(urls.run, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (error) {
      setStatus(`The service could not be reached: ${error.message}`, true);
      return;
    }
    const result = await answer.json().catch(() => null);
    if (!answer.ok || !result) {
      const issue = (result && result.issue && result.issue[0]) || {};
      setStatus(`The preview refused the request (${answer.status}): ${issue.diagnostics || ""}`, true);
      return;
    }
    showRequest(result.request);
    renderAnswer(result);
    if (isBundle) setStatus(`${$("status").textContent} (request built from the Bundle)`, false);
  }

  function applyAction(request, action) {
    const drafts = request.context.draftOrders;
    const selections = Array.isArray(request.context.selections) ? request.context.selections : null;
    const references = (Array.isArray(action.resourceId) ? action.resourceId : [action.resourceId]).filter(Boolean);
    if (action.type === "create" && action.resource) {
      const resource = clone(action.resource);
      if (!resource.id) resource.id = `preview-${++state.counter}`;
      if (!resource.status) resource.status = "draft";
      drafts.entry = drafts.entry || [];
      drafts.entry.push({ resource });
      if (selections) selections.push(reference(resource));
    } else if (action.type === "delete") {
      drafts.entry = (drafts.entry || []).filter((e) => !(e.resource && references.includes(reference(e.resource))));
      if (selections) request.context.selections = selections.filter((s) => !references.includes(s));
    } else if (action.type === "update" && action.resource) {
      const target = reference(action.resource);
      drafts.entry = (drafts.entry || []).map((e) =>
        e.resource && reference(e.resource) === target ? { resource: clone(action.resource) } : e,
      );
    }
  }

  function takeSuggestion(suggestion) {
    const request = clone(state.request);
    const orderHook = ORDER_HOOKS.includes(request.hook) && request.context && request.context.draftOrders;
    for (const action of suggestion.actions || []) {
      if (orderHook) {
        applyAction(request, action);
      } else if (action.type === "create" && action.resource) {
        state.created.push(clone(action.resource)); // no draft orders in this hook: listed apart
      }
    }
    request.hookInstance = newUuid();
    showRequest(request);
    setStatus(`Took "${suggestion.label}"; running again…`, false);
    run();
  }

  async function loadScenario(name) {
    state.scenario = name;
    state.created = [];
    $("scenario-description").textContent = "";
    if (!name) return;
    const answer = await fetch(urls.scenarios + encodeURIComponent(name), { credentials: "same-origin" });
    if (!answer.ok) {
      setStatus(`The scenario could not be loaded (${answer.status}).`, true);
      return;
    }
    const scenario = await answer.json();
    $("service").value = scenario.service;
    $("scenario-description").textContent = scenario.description;
    showRequest(scenario.request);
    await run();
  }

  document.addEventListener("DOMContentLoaded", () => {
    urls = JSON.parse($("preview-data").textContent).urls;
    $("scenario").addEventListener("change", (event) => loadScenario(event.target.value));
    $("run").addEventListener("click", () => run());
    $("reset").addEventListener("click", () => loadScenario(state.scenario));
    $("request-text").addEventListener("change", () => {
      try {
        const parsed = JSON.parse($("request-text").value);
        if (parsed && parsed.context) renderDrafts(parsed);
      } catch (error) {
        // shown when run
      }
    });
  });
})();
