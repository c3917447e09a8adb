/** Roles and the template database the test run creates (test-only credentials). */
export const TEST_ROLES = {
  template: 'tenant_email_template',
  ownerRole: 'email_owner',
  ownerPassword: 'owner-test-password',
  workerRole: 'email_worker',
  workerPassword: 'worker-test-password',
} as const;
